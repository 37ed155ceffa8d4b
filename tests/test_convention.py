"""The homography convention end to end: one registration per fitting case.

``geometry.fitted_size`` (MoonRegistration v1.0.3's ``sync_img_size``) is
pinned by tests/test_engine.py::TestFittedSize; here each case is registered
through :func:`~moontrek.registration.register` on encoded files, and the
answer is compared with the truth on the Moon's disk, in the frame of the
model fitted to the photo.
"""

import numpy as np
import pytest

from moontrek.registration import fitted_size, register
from moontrek.synthetic import disk_error, encode, make_pair, render_moon

# Mean error over the disk, as a fraction of the disk's diameter in the
# fitted model: a frame mix-up (the old rule) is off by 10-80% here.
DISK_TOLERANCE = 0.01
MOON_SIDE = 600


def _model(width, height):
    """A render_moon disk centred on a width x height black canvas."""
    moon = render_moon(MOON_SIDE, seed=21)
    canvas = np.zeros((height, width, 3), np.uint8)
    x, y = (width - MOON_SIDE) // 2, (height - MOON_SIDE) // 2
    canvas[y : y + MOON_SIDE, x : x + MOON_SIDE] = moon
    return canvas


CASES = {
    # name: (model width, height), (user width, height), scale of the disk
    "square photo smaller than the model": ((700, 700), (500, 500), 0.7),
    "landscape photo smaller than the model": ((700, 700), (640, 480), 0.7),
    "portrait photo smaller than the model": ((700, 700), (480, 640), 0.7),
    "landscape photo larger than the model (enlarged)": ((700, 700), (1400, 1000), 1.5),
    "portrait photo larger than the model (enlarged)": ((700, 700), (1000, 1400), 1.5),
    "landscape model, square photo": ((1000, 700), (600, 600), 0.8),
    "portrait model, landscape photo": ((700, 1000), (900, 700), 0.9),
}


class TestFittedConventionRegistration:
    """register() answers in the frame of the model fitted inside the photo
    (enlarged when the photo is larger), whatever the shapes."""

    @pytest.mark.parametrize("case", list(CASES))
    def test_registration_lands_on_the_disk(self, case):
        """The photo's disk maps onto the fitted model's disk within 1% of
        its diameter, and the answer's model circle has the fitted size."""
        (model_w, model_h), (user_w, user_h), scale = CASES[case]
        model = _model(model_w, model_h)
        pair = make_pair(model, angle=40.0, scale=scale, user_size=(user_w, user_h))
        result = register(encode(pair.user), encode(model), "ORB")
        fit_w, fit_h = fitted_size(model_w, model_h, user_w, user_h)
        disk_radius = 0.46 * MOON_SIDE
        user_circle = (user_w / 2.0, user_h / 2.0, disk_radius * scale)
        error = disk_error(result.homography, pair.expected, user_circle)
        assert error <= DISK_TOLERANCE * 2 * disk_radius * fit_w / model_w
        circle = result.extras["circles"]["model"]
        assert circle["x"] == pytest.approx(fit_w / 2.0, rel=0.03)
        assert circle["y"] == pytest.approx(fit_h / 2.0, rel=0.03)
        assert circle["radius"] == pytest.approx(disk_radius * fit_w / model_w, rel=0.03)
