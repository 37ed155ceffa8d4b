"""Any image the limits allow is answered: a result or a RegistrationError
from register(), a documented status (never 500) from the app.

Property-based over shapes (a 16 px high strip, a 20000 px wide panorama,
everything between), channel layouts (grey, BGR, BGRA), depths (8 and 16
bit) and contents (black, noise, a Moon), in both upload fields, with every
pipeline. Derandomized so that a run is repeatable; bounded in pixels so the
file stays within a few seconds' budget.
"""

import cv2
import falcon.testing
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moontrek.app import create_app
from moontrek.registration import ALGORITHM_NAMES, RegistrationError, algorithm_table, register
from moontrek.synthetic import encode, render_moon

from tests.conftest import multipart

AVAILABLE = [name for name in ALGORITHM_NAMES if algorithm_table()[name].available]
MAX_PIXELS = 400_000
ANSWERS = {200, 400, 413, 422}

ROBUST = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def shapes(draw):
    """(height, width): squares, strips and panoramas down to 16 px a side
    and up to 20000 px long, at most MAX_PIXELS."""
    short = draw(st.integers(16, 400))
    long = draw(st.sampled_from([short, 2 * short, 20000 // 16 * 16, 20000]) | st.integers(short, 20000))
    long = max(short, min(long, MAX_PIXELS // short))
    return (short, long) if draw(st.booleans()) else (long, short)


@st.composite
def images(draw):
    """An encoded PNG of some shape, layout, depth and content."""
    height, width = draw(shapes())
    channels = draw(st.sampled_from([1, 3, 4]))
    deep = draw(st.booleans())
    content = draw(st.sampled_from(["black", "noise", "moon"]))
    seed = draw(st.integers(0, 1000))
    rng = np.random.default_rng(seed)
    if content == "noise":
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    else:
        image = np.zeros((height, width, 3), np.uint8)
        if content == "moon":
            side = min(height, width)
            moon = render_moon(max(16, side), seed=seed % 7, craters=60)[:side, :side]
            x, y = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
            image[y : y + side, x : x + side] = moon
    if channels == 1:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif channels == 4:
        image = np.dstack([image, np.full((height, width), 255, np.uint8)])
    if deep:
        image = image.astype(np.uint16) * 257
    return encode(image)


MODEL = encode(render_moon(300, seed=3))


class TestRegisterAnswersEveryImage:
    """register() returns a result or raises a RegistrationError subclass,
    whatever the shape, layout, depth or content of either image."""

    @ROBUST
    @given(data=images(), algorithm=st.sampled_from(AVAILABLE), pipeline=st.sampled_from(["moon", "classic"]), as_model=st.booleans())
    def test_result_or_registration_error(self, data, algorithm, pipeline, as_model):
        """No other exception escapes; a result's homography is finite."""
        user, model = (MODEL, data) if as_model else (data, MODEL)
        try:
            result = register(user, model, algorithm, pipeline=pipeline, max_pixels=50_000_000)
        except RegistrationError:
            return
        assert np.asarray(result.homography).shape == (3, 3)
        assert np.all(np.isfinite(result.homography))


@pytest.fixture(scope="module")
def robust_client(tmp_path_factory):
    from moontrek.config import validate_config

    config = validate_config(
        {"log_filepath": str(tmp_path_factory.mktemp("logs") / "moontrek.log"), "default_rate_limits": []},
        source="test config",
    )
    return falcon.testing.TestClient(create_app(config))


class TestAppAnswersEveryImage:
    """Over HTTP the same images get a documented status in the envelope."""

    @ROBUST
    @given(data=images(), algorithm=st.sampled_from(AVAILABLE), as_model=st.booleans())
    def test_never_500(self, robust_client, data, algorithm, as_model):
        """200, 400, 413 or 422, with the envelope's ok and status."""
        files = {"user-file": MODEL, "model-file": data} if as_model else {"user-file": data, "model-file": MODEL}
        body, headers = multipart(files)
        result = robust_client.simulate_post(f"/api/registrar/{algorithm}", body=body, headers=headers)
        assert result.status_code in ANSWERS, result.text
        assert result.json["status"] == result.status_code
        assert result.json["ok"] is (result.status_code == 200)
