"""The page at /, driven in a real browser as a person would use it.

Debian's headless Chromium (scripts/test.sh installs it) driven by
Playwright for Python, against a live ``moontrek serve`` on a free loopback
port. Skipped with a message where Chromium or Playwright is absent; the
browser is never downloaded.
"""

import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from moontrek.registration.geometry import fitted_size, scale_matrix
from moontrek.synthetic import _crop_box, encode, make_pair, render_moon, to_rgba_render

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[1]
# A registration on a busy 2-core machine takes about a second; allow plenty.
WAIT_MS = 60_000

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is not installed: pip install 'moontrek[test]'"
)
if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
    pytest.skip("Chromium is not installed: scripts/test.sh installs Debian's chromium with apt-get",
                allow_module_level=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """``moontrek serve`` in a subprocess with its own config file."""

    def __init__(self, folder, config):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        config_file = folder / "config.py"
        config = {"log_filepath": str(folder / "moontrek.log"), "port": self.port, **config}
        config_file.write_text(f"CONFIG = {config!r}\n")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moontrek", "serve", "--config", str(config_file)],
            cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "api/health", timeout=1):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moontrek serve did not start; see {folder / 'moontrek.log'}")
                time.sleep(0.1)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A generated portrait pair, a map layer, and a text file, on disk."""
    folder = tmp_path_factory.mktemp("uploads")
    model = render_moon(800, seed=4)
    pair = make_pair(model, angle=35.0, scale=0.7, shift=(10.0, -20.0), user_size=(600, 840))
    layer = np.zeros((800, 800, 4), np.uint8)
    layer[395:405, 100:700] = (0, 200, 255, 255)
    layer[100:700, 395:405] = (255, 120, 0, 255)
    paths = {"user": folder / "moon-photo.png", "model": folder / "render.png", "layer": folder / "layer.png",
             "text": folder / "notes.txt", "big": folder / "big-photo.png"}
    paths["user"].write_bytes(encode(pair.user))
    paths["model"].write_bytes(encode(model))
    paths["layer"].write_bytes(encode(layer))
    paths["text"].write_text("This is not a photo of the Moon.\n")
    paths["big"].write_bytes(encode(np.random.default_rng(0).integers(0, 255, (900, 900, 3), dtype=np.uint8)))
    return paths, pair.user.shape


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The server on the built-in defaults (20 registrations a day, CORS "*")."""
    live = LiveServer(tmp_path_factory.mktemp("server"), {})
    yield live
    live.stop()


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory):
    """A server with a small upload limit and a budget of two registrations."""
    live = LiveServer(tmp_path_factory.mktemp("strict"),
                      {"max_upload_bytes": 1_000_000, "default_rate_limits": ["2 per day"]})
    yield live
    live.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    yield page
    context.close()


def open_page(page, server):
    """Open the page and wait until the algorithm list has been loaded."""
    page.goto(server.url)
    page.wait_for_function("document.querySelectorAll('select[name=algorithm] option').length > 1")


def submit(page):
    page.get_by_role("button", name="Register and draw").click()


def wait_for_failure(page):
    page.wait_for_selector("#result.failed", timeout=WAIT_MS)
    return page.inner_text("#result")


class TestPage:
    def test_register_and_see_the_overlay(self, page, server, files, tmp_path):
        """Choose a photo, a render and a layer, lower the transparency, press
        the button: the overlay appears at the photo's size and the result
        lists the quality fields."""
        paths, (height, width, _) = files
        open_page(page, server)
        page.set_input_files("input[name=user-file]", str(paths["user"]))
        page.set_input_files("input[name=model-file]", str(paths["model"]))
        page.set_input_files("input[name=layer-file]", str(paths["layer"]))
        page.select_option("select[name=algorithm]", "ORB")
        page.focus("#transparency")
        for _ in range(4):
            page.keyboard.press("ArrowLeft")
        assert page.inner_text("#transparency-value") == "0.80"
        submit(page)
        page.wait_for_function(
            "() => { const img = document.querySelector('img#overlay');"
            " return !img.hidden && img.complete && img.naturalWidth > 0; }",
            timeout=WAIT_MS,
        )
        size = page.eval_on_selector("img#overlay", "img => [img.naturalWidth, img.naturalHeight]")
        assert size == [width, height]
        text = page.inner_text("#result")
        assert "ORB" in text and "inliers" in text and "circles" in text and "milliseconds" in text
        inliers = int(text.split("inliers")[1].split()[0])
        assert inliers > 10
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        assert (tmp_path / "page.png").stat().st_size > 10_000

    def test_algorithms_come_from_the_server(self, page, server):
        """The select lists every algorithm of GET /api/registrar, and only
        the available ones are enabled."""
        open_page(page, server)
        options = page.eval_on_selector_all(
            "select[name=algorithm] option", "options => options.map(o => [o.value, o.disabled])"
        )
        with urllib.request.urlopen(server.url + "api/registrar") as answer:
            listed = json.load(answer)["payload"]["algorithms"]
        assert options == [[entry["name"], not entry["available"]] for entry in listed]
        assert [name for name, _ in options] == ["SIFT", "ORB", "AKAZE", "BRISK", "SURF"]

    def test_a_text_file_as_the_photo(self, page, server, files, tmp_path):
        """A text file chosen as the photo: the server's message in #result,
        no overlay shown."""
        paths, _ = files
        open_page(page, server)
        page.set_input_files("input[name=user-file]", str(paths["text"]))
        page.set_input_files("input[name=model-file]", str(paths["model"]))
        submit(page)
        message = wait_for_failure(page)
        assert "400" in message and "user-file is not an image" in message
        assert page.eval_on_selector("img#overlay", "img => img.hidden")
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)

    def test_missing_file_is_said_before_posting(self, page, server):
        """Pressing the button without a render: a message, no request spent."""
        open_page(page, server)
        submit(page)
        assert "Choose a file" in wait_for_failure(page)


class TestPageLimits:
    def test_too_large_then_rate_limited(self, page, strict_server, files):
        """An upload over the server's limit shows the 413 message (waitress
        refuses it from its Content-Length, before the API, in the JSON
        envelope, so it costs no budget); once the budget of two is spent, the 429 message with when
        to come back."""
        paths, _ = files
        open_page(page, strict_server)
        page.set_input_files("input[name=user-file]", str(paths["big"]))
        page.set_input_files("input[name=model-file]", str(paths["model"]))
        submit(page)
        message = wait_for_failure(page)
        assert "413" in message and "over the upload limit of 1000000 bytes" in message
        page.set_input_files("input[name=user-file]", str(paths["text"]))
        for _ in range(2):
            page.evaluate("document.querySelector('#result').className = ''")
            submit(page)
            assert "400" in wait_for_failure(page)
        submit(page)
        page.wait_for_function("document.querySelector('#result').innerText.includes('429')", timeout=WAIT_MS)
        message = page.inner_text("#result")
        assert "Too many" in message or "used its 2 requests" in message
        assert "try again in" in message


class TestBrowserPngs:
    """The PNGs the browser itself writes (the client's crops and renders
    come from a canvas) take moontrek's fast PNG path and decode to exactly
    OpenCV's pixels."""

    DRAW = """([width, height, alpha]) => {
        const canvas = document.createElement('canvas');
        canvas.width = width; canvas.height = height;
        const g = canvas.getContext('2d');
        const sky = g.createRadialGradient(width / 2, height / 2, 5, width / 2, height / 2, width / 2);
        sky.addColorStop(0, '#f4f0e8'); sky.addColorStop(1, alpha ? 'rgba(20, 30, 40, 0.4)' : '#101418');
        g.fillStyle = sky; g.fillRect(0, 0, width, height);
        let seed = 7;
        const next = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
        for (let i = 0; i < 800; i++) {
            g.fillStyle = `rgba(${255 * next() | 0}, ${255 * next() | 0}, ${255 * next() | 0}, ${alpha ? next() : 1})`;
            g.beginPath(); g.arc(width * next(), height * next(), 1 + 12 * next(), 0, 2 * Math.PI); g.fill();
        }
        return canvas.toDataURL('image/png');
    }"""

    @pytest.mark.parametrize("size,alpha", [((640, 480), False), ((300, 700), True)])
    def test_canvas_png_decodes_on_the_fast_path(self, browser, size, alpha):
        import base64

        import cv2

        from moontrek.registration import png
        from moontrek.registration.images import decode_image

        page = browser.new_page()
        try:
            url = page.evaluate(self.DRAW, [size[0], size[1], alpha])
        finally:
            page.close()
        data = base64.b64decode(url.split(",", 1)[1])
        fast = png.decode(data)
        assert fast is not None, "the browser's PNG no longer takes the fast path (its filters changed?)"
        reference = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(fast, reference[..., [2, 1, 0, 3][: reference.shape[2]]])
        np.testing.assert_array_equal(decode_image(data, keep_alpha=True), reference if reference.shape[2] == 4
                                      else cv2.cvtColor(reference, cv2.COLOR_BGR2BGRA))


class ClientSite:
    """The client stand-in (tests/client/index.html) and its images, served
    from a loopback port of their own: another origin than the server's."""

    PAGE = Path(__file__).resolve().parent / "client" / "index.html"

    def __init__(self, folder):
        self.folder = folder
        shutil.copy(self.PAGE, folder / "index.html")
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class TestMoonTrekClient:
    """The Moon-Trek client's fallback, as it runs in a browser: the Moon cut
    out of a whole photo, posted with the client's render from a page on
    another origin to /pyapi/registrar/<algorithm>, and a map layer drawn
    with the answer the way the client draws it (the fitted model's canvas
    centred on the crop). The layer's marks must land where the true
    homography puts them, drawn by the same code."""

    RENDER_RADIUS = 920
    # RGB, exact: the stand-in scales the layer without smoothing.
    COLOURS = {"red": (255, 0, 0), "green": (0, 200, 0), "blue": (0, 0, 255), "yellow": (255, 220, 0)}
    MARKS = {"red": (-0.45, -0.3), "green": (0.4, -0.35), "blue": (-0.3, 0.45), "yellow": (0.35, 0.4)}
    PHOTO = (1600, 1200)
    SCALE = 0.2

    @pytest.fixture(scope="class")
    def site(self, tmp_path_factory):
        folder = tmp_path_factory.mktemp("client")
        model = render_moon(2000, radius=self.RENDER_RADIUS, seed=11)
        (folder / "render.png").write_bytes(encode(to_rgba_render(model)))
        layer = np.zeros((2000, 2000, 4), np.uint8)
        import cv2

        # A black ring the client drops, and a coloured mark per quadrant.
        cv2.circle(layer, (1000, 1000), 700, (0, 0, 0, 255), 30)
        for name, (dx, dy) in self.MARKS.items():
            r, g, b = self.COLOURS[name]
            centre = (int(1000 + dx * self.RENDER_RADIUS), int(1000 + dy * self.RENDER_RADIUS))
            cv2.circle(layer, centre, 60, (b, g, r, 255), -1)
        (folder / "layer.png").write_bytes(encode(layer))
        site = ClientSite(folder)
        yield site, model
        site.stop()

    def photo(self, site, model, name, centre):
        """A whole photo with the Moon at ``centre``; the client's circle
        (integers) and the map from render pixels to photo pixels."""
        site, _ = site
        width, height = self.PHOTO
        shift = (centre[0] - width / 2.0, centre[1] - height / 2.0)
        pair = make_pair(model, angle=-20.0, scale=self.SCALE, shift=shift, user_size=self.PHOTO)
        rng = np.random.default_rng(3)
        sky = np.clip(14 + 6 * np.linspace(0, 1, height)[:, None, None] + rng.normal(0, 2.5, (height, width, 1)),
                      0, 255).astype(np.uint8)
        photo = np.maximum(pair.user, sky)
        (site.folder / name).write_bytes(encode(photo))
        x, y, _ = pair.model_to_user @ np.array([1000.0, 1000.0, 1.0])
        return (round(x), round(y), round(self.RENDER_RADIUS * self.SCALE)), pair.model_to_user

    @pytest.mark.parametrize("algorithm", ["SURF", "SIFT"])
    @pytest.mark.parametrize("where", ["middle", "edge"])
    def test_layer_lands_where_the_truth_draws_it(self, browser, server, site, where, algorithm):
        site_, model = site
        width, height = self.PHOTO
        # "edge": the Moon 0.95 r from the right border, so the client's
        # crop is clipped there and is not square.
        centre = (700, 520) if where == "middle" else (width - 175, 600)
        name = f"photo-{where}.png"
        circle, model_to_user = self.photo(site, model, name, centre)
        page = browser.new_page()
        try:
            page.goto(site_.url)
            posted = page.evaluate("([server, algorithm, photo, circle]) => register(server, algorithm, photo, circle)",
                                   [server.url, algorithm, name, list(circle)])
            assert posted["status"] == 200 and posted["answer"]["ok"] is True, posted
            x1, y1, x2, y2 = posted["box"]
            assert (x1, y1, x2, y2) == _crop_box(*circle, width, height)
            crop_w, crop_h = posted["size"]
            assert (where == "edge") == (crop_w != crop_h)
            fit_w, fit_h = fitted_size(2000, 2000, crop_w, crop_h)
            assert posted["fitted"] == [fit_w, fit_h]
            shift = np.array([[1.0, 0, x1], [0, 1.0, y1], [0, 0, 1.0]])
            truth = scale_matrix(fit_w / 2000, fit_h / 2000) @ np.linalg.inv(model_to_user) @ shift
            truth = (truth / truth[2, 2]).tolist()
            answer = posted["answer"]["payload"]["homography_matrix"]
            drawn = {}
            for label, matrix in (("answer", answer), ("truth", truth)):
                drawn[label] = page.evaluate("([size, H, colours]) => drawLayer(size, H, colours)",
                                             [[crop_w, crop_h], matrix, self.COLOURS])
        finally:
            page.close()
        seen = [name for name, centroid in drawn["truth"].items() if centroid is not None]
        assert len(seen) >= 3, drawn
        diameter = 2 * circle[2]
        for colour in seen:
            got = drawn["answer"][colour]
            assert got is not None, (colour, drawn)
            want = drawn["truth"][colour]
            assert np.hypot(got[0] - want[0], got[1] - want[1]) <= 0.02 * diameter, (colour, got, want)

    def test_upload_limit_read_across_origins(self, browser, strict_server, site):
        """A photo over the server's limit, posted from the client's origin:
        the page reads the 413 envelope (waitress refuses it before the app
        and still answers CORS)."""
        site_, _ = site
        page = browser.new_page()
        try:
            page.goto(site_.url)
            posted = page.evaluate("([server, bytes]) => postBytes(server, bytes)", [strict_server.url, 1_500_000])
        finally:
            page.close()
        assert posted["status"] == 413
        assert "upload limit of 1000000 bytes" in posted["answer"]["error"]
