"""Shared fixtures: configs, apps, clients, multipart bodies, synthetic pairs."""

import functools
import logging
import sys
import uuid
from pathlib import Path

import cv2
import falcon.testing
import numpy as np
import pytest

from moontrek.app import create_app
from moontrek.config import validate_config
from moontrek.synthetic import encode, make_lunar_maps, make_pair, make_phone_photo, render_moon

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(*parts):
    """Path under ../shared/data, or skip the test with a clear message."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the real demo data (../shared/data) is not on this machine")
    return path


def gibbous_photo(seed=3, **options):
    """(BGR photo, true circle): a phone photo of an over-exposed gibbous
    Moon on a bright twilight sky, the Moon generated (the same with or
    without ../shared). Its terminator's edge is as sharp as the limb's, so
    the detector's circle alone is a few per cent off. ``options`` go to
    make_phone_photo."""
    moon = render_moon(608, radius=300, seed=seed, craters=300)
    settings = dict(megapixels=3, moon=moon, circle=(303.5, 303.5, 300.0), fraction=0.15, phase=39.0, direction=0.0,
                    exposure=1.9, distractors=(), halo=0.0, cloud=0.0, sky=(120, 110, 160), gradient=0.5)
    settings.update(options)
    image, truth, _ = make_phone_photo(seed, **settings)
    return image, truth


@functools.lru_cache(maxsize=1)
def _benchmarks():
    """benchmarks/bench_detect_second.py (the scene generator written apart
    from moontrek.synthetic) and bench_register_second.py (the renders made
    for its Moons)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_detect_second
    import bench_register_second

    return bench_detect_second, bench_register_second


@functools.lru_cache(maxsize=1)
def shared_lunar_maps():
    """The lunar maps in ../shared/data/textures; skips the test without them."""
    return [cv2.imread(str(shared_data("textures", name)), cv2.IMREAD_COLOR) for name in ("moon-2k.jpg", "ldam_10.png")]


@functools.lru_cache(maxsize=2)
def generated_lunar_maps(size):
    """The two lunar maps made in code (a render-like mosaic, an albedo map)
    of ``size``, built once for every test module."""
    return list(make_lunar_maps(0, size))


def second_generator_scene(seed, shared=False):
    """The second generator's scene ``seed`` as its benchmark builds it,
    its Moon drawn from generated maps (``shared``: from the shared ones,
    as the benchmark does where they exist); the Moon-less scenes draw on
    no map. Returns (image, truth circle or None)."""
    second, _ = _benchmarks()
    second.MAPS = shared_lunar_maps() if shared else generated_lunar_maps((720, 360))
    image, truth, _ = second.scene(seed, seed % 2 == 0, second.KINDS[(seed // 2) % len(second.KINDS)])
    return image, (tuple(float(v) for v in truth) if len(truth) else None)


@functools.lru_cache(maxsize=4)
def second_generator_pair(seed):
    """The Moon scene ``seed`` (even) of bench_register_second.py on the
    generated maps: (photo JPEG bytes, render RGBA PNG bytes, the true
    homography, the photo's true circle, the Moon's diameter in the frame
    the homography maps into), as the benchmark scores it."""
    _, register_second = _benchmarks()
    maps = generated_lunar_maps((1440, 720))
    [(_, _, image, circle, view, photo_map, sun)] = list(register_second.scenes(seed, 1, maps))
    photo, render, expected, diameter = register_second.request_for(seed, maps, image, view, photo_map, sun)
    return photo, render, expected, circle, diameter


def keypoint_rows(keypoints):
    """cv2.KeyPoints as an (n, 7) array: x, y, size, angle, response, octave, class_id."""
    return np.array([[k.pt[0], k.pt[1], k.size, k.angle, k.response, k.octave, k.class_id]
                     for k in keypoints], np.float64).reshape(-1, 7)


def multipart(files, fields=None, boundary=None):
    """Build a multipart/form-data body by hand, as Falcon's own tests do.

    ``files`` maps a field name to bytes (or to a list of bytes to send the
    field several times). Returns (body, headers).
    """
    boundary = boundary or f"moontrek-{uuid.uuid4().hex}"
    chunks = []
    for name, value in (fields or {}).items():
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for name, contents in files.items():
        for data in contents if isinstance(contents, list) else [contents]:
            chunks.append(
                (
                    f"--{boundary}\r\n"
                    f'Content-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
                    "Content-Type: image/png\r\n\r\n"
                ).encode()
                + data
                + b"\r\n"
            )
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.fixture(autouse=True, scope="session")
def logging_errors_fail():
    """A log call that cannot be formatted (``%d`` given a string) fails the
    test that made it, instead of printing ``--- Logging error ---`` and
    going on: logging.raiseExceptions stays on, and the handler's
    handleError re-raises the error it was given."""
    assert logging.raiseExceptions

    def handle_error(self, record):
        raise  # noqa: PLE0704 - re-raises the formatting error being handled

    original = logging.Handler.handleError
    logging.Handler.handleError = handle_error
    yield
    logging.Handler.handleError = original


@pytest.fixture
def make_config(tmp_path):
    """Build a checked config whose log goes to the test's temporary folder."""

    def build(**overrides):
        raw = {
            "log_filepath": str(tmp_path / "logs" / "moontrek.log"),
            "default_rate_limits": ["1000 per hour"],
            **overrides,
        }
        return validate_config(raw, source="test config")

    return build


@pytest.fixture
def config(make_config):
    return make_config()


@pytest.fixture
def app(config):
    return create_app(config)


@pytest.fixture
def client(app):
    return falcon.testing.TestClient(app)


@pytest.fixture(scope="session")
def moon_model():
    """A synthetic model render (BGR)."""
    return render_moon(600, seed=7)


@pytest.fixture(scope="session")
def moon_pair(moon_model):
    """A user photo made from the model by a known homography."""
    return make_pair(moon_model, angle=35.0, scale=0.8, user_size=(520, 500))


@pytest.fixture(scope="session")
def pair_files(moon_pair):
    """The synthetic pair as upload bytes: {"user-file": ..., "model-file": ...}."""
    return {"user-file": encode(moon_pair.user), "model-file": encode(moon_pair.model)}


class RedisServer:
    """A throwaway redis-server on a free loopback port, which a test can stop
    and start again on the same port (to play an outage)."""

    def __init__(self, executable, folder):
        import socket

        self.executable = executable
        self.folder = folder
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.process = None

    @property
    def uri(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        import socket
        import subprocess
        import time

        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real Redis (Debian's redis-server, installed by scripts/test.sh)."""
    import shutil

    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not installed: scripts/test.sh installs it with apt-get")
    server = RedisServer(executable, tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis(redis_server):
    """The Redis server, running and emptied for this test."""
    import socket

    if redis_server.process is None:
        redis_server.start()
    with socket.create_connection(("127.0.0.1", redis_server.port), timeout=2) as sock:
        sock.sendall(b"FLUSHALL\r\n")
        sock.recv(16)
    yield redis_server
    if redis_server.process is None:
        redis_server.start()
