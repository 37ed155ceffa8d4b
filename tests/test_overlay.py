"""Overlays: the engine's drawing functions and the overlay endpoint."""

import json

import cv2
import numpy as np
import pytest

from moontrek.registration import RegistrationResult, fitted_size, register_images
from moontrek.registration.drawing import (
    draw_blend,
    draw_matches,
    draw_overlay,
    draw_view,
    encode_image,
    layer_to_photo,
)
from moontrek.registration.geometry import map_points
from moontrek.synthetic import encode, make_pair, render_moon
from tests.conftest import multipart

MODEL_SIDE = 600
# Photo shapes as (width, height): portrait, landscape, and a square one.
SHAPES = {"portrait": (520, 820), "landscape": (860, 540), "square": (560, 560)}


@pytest.fixture(scope="module")
def model():
    return render_moon(MODEL_SIDE, seed=21)


@pytest.fixture(scope="module")
def pairs(model):
    """One generated pair per photo shape, the Moon off the photo's centre so
    that a layer drawn with the wrong origin cannot land right by luck."""
    return {
        name: make_pair(model, angle=25.0 + 40 * i, scale=0.78, shift=(-25.0 + 20 * i, 30.0 - 25 * i),
                        perspective=(0.04, -0.03), user_size=size)
        for i, (name, size) in enumerate(SHAPES.items())
    }


@pytest.fixture(scope="module")
def results(pairs):
    """The moon pipeline's registration of each pair with SIFT."""
    return {name: register_images(pair.user, pair.model, "SIFT") for name, pair in pairs.items()}


def map_layer(side=MODEL_SIDE):
    """A map-like RGBA layer in the render's frame: coloured lines and rings
    on a transparent background, plus an opaque black square (dropped by the
    client's black filter)."""
    layer = np.zeros((side, side, 4), np.uint8)
    c = side // 2
    for k, colour in enumerate([(0, 0, 255, 255), (0, 255, 0, 255), (255, 128, 0, 255)]):
        cv2.circle(layer, (c, c), int(side * (0.12 + 0.1 * k)), colour, max(2, side // 120))
    cv2.line(layer, (int(side * 0.2), c), (int(side * 0.8), c), (255, 255, 0, 255), max(2, side // 150))
    cv2.line(layer, (c, int(side * 0.2)), (c, int(side * 0.8)), (255, 0, 255, 255), max(2, side // 150))
    cv2.rectangle(layer, (int(side * 0.6), int(side * 0.25)), (int(side * 0.7), int(side * 0.35)), (0, 0, 0, 255), -1)
    return layer


def disk_mask(pair, shrink=0.95):
    """The Moon's disk in the photo, from the true mapping of the render's disk."""
    height, width = pair.user.shape[:2]
    centre = map_points(pair.model_to_user, [[MODEL_SIDE / 2.0, MODEL_SIDE / 2.0]])[0]
    edge = map_points(pair.model_to_user, [[MODEL_SIDE / 2.0 + 0.46 * MODEL_SIDE, MODEL_SIDE / 2.0]])[0]
    radius = np.hypot(*(edge - centre)) * shrink
    mask = np.zeros((height, width), np.uint8)
    cv2.circle(mask, tuple(int(round(v)) for v in centre), int(radius), 255, -1)
    return mask > 0


def drawn(out, photo):
    """Where the overlay changed the photo."""
    return np.abs(out.astype(int) - photo.astype(int)).max(axis=2) > 40


def decode(data):
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


class TestOverlayGeometry:
    @pytest.mark.parametrize("shape", SHAPES)
    def test_layer_matches_the_true_homography_on_the_disk(self, pairs, results, shape):
        """On the Moon's disk, the layer drawn with the registered homography
        is the layer drawn with the true one (portrait, landscape, square)."""
        pair, result = pairs[shape], results[shape]
        layer = map_layer()
        ours = draw_overlay(pair.user, pair.model.shape, [layer], result.homography)
        truth = draw_overlay(pair.user, pair.model.shape, [layer], pair.expected)
        disk = disk_mask(pair)
        ours_lines, true_lines = drawn(ours, pair.user) & disk, drawn(truth, pair.user) & disk
        overlap = (ours_lines & true_lines).sum() / (ours_lines | true_lines).sum()
        assert true_lines.sum() > 1000
        assert overlap > 0.8, overlap
        assert np.abs(ours.astype(int) - truth.astype(int))[disk].mean() < 4.0

    @pytest.mark.parametrize("shape", SHAPES)
    def test_drawn_in_the_photo_frame(self, pairs, shape):
        """A dot at a render pixel lands on the photo pixel the pair's own
        render-to-photo warp sends it to: no canvas of the fitted model's size
        centred on the photo (v1.0.3), which shifts non-square photos."""
        pair = pairs[shape]
        layer = np.zeros((MODEL_SIDE, MODEL_SIDE, 4), np.uint8)
        spot = (420.0, 180.0)
        cv2.circle(layer, (int(spot[0]), int(spot[1])), 6, (0, 0, 255, 255), -1)
        out = draw_overlay(pair.user, pair.model.shape, [layer], pair.expected)
        red = (out[:, :, 2].astype(int) - out[:, :, 1]) > 150
        ys, xs = np.nonzero(red)
        expected = map_points(pair.model_to_user, [spot])[0]
        assert np.hypot(xs.mean() - expected[0], ys.mean() - expected[1]) < 1.5

    def test_layer_to_photo_composes_the_convention(self):
        """layer px -> photo px is inv(H) @ scale(fit / layer), whatever the
        layer's size against the render's."""
        homography = np.array([[0.9, 0.1, 12.0], [-0.1, 0.9, 30.0], [0.0, 0.0, 1.0]])
        fit_w, fit_h = fitted_size(2000, 2000, 700, 400)
        for layer_side in (2000, 1000):
            matrix = layer_to_photo(homography, (layer_side, layer_side, 4), (2000, 2000, 4), (400, 700, 3))
            point = np.array([[layer_side * 0.3, layer_side * 0.6]])
            fitted = point * [fit_w / layer_side, fit_h / layer_side]
            assert np.allclose(map_points(homography, map_points(matrix, point)), fitted)

    def test_output_is_the_photo_size(self, pairs, results):
        """The overlay is a BGR image of the photo's size, for every shape."""
        for name, pair in pairs.items():
            out = draw_view("overlay", results[name], pair.user, pair.model, [map_layer(2000)])
            assert out.shape == pair.user.shape and out.dtype == np.uint8


class TestOverlaySemantics:
    """Alpha, the black filter and transparency, on a flat grey photo with an
    identity registration (a 100x100 render drawn onto a 100x100 photo)."""

    photo = np.full((100, 100, 3), 100, np.uint8)
    identity = np.eye(3)

    def layer(self, colour):
        return np.dstack([np.full((100, 100, 3), colour[:3], np.uint8), np.full((100, 100), colour[3], np.uint8)])

    def test_opaque_colour_replaces_the_photo(self):
        """An opaque red layer pixel shows red at full transparency 1."""
        out = draw_overlay(self.photo, (100, 100), [self.layer((0, 0, 255, 255))], self.identity)
        assert np.abs(out[50, 50].astype(int) - [0, 0, 255]).max() <= 1

    def test_black_and_transparent_are_dropped(self):
        """Pure black (0xff000000) and fully transparent pixels leave the photo
        as it was; so does black with partial alpha."""
        for colour in ((0, 0, 0, 255), (0, 0, 255, 0), (0, 0, 0, 128)):
            out = draw_overlay(self.photo, (100, 100), [self.layer(colour)], self.identity)
            assert np.array_equal(out, self.photo), colour

    def test_dark_but_not_black_is_drawn(self):
        """Only pure black is dropped: (1, 1, 1) is a colour."""
        out = draw_overlay(self.photo, (100, 100), [self.layer((1, 1, 1, 255))], self.identity)
        assert out[50, 50].max() <= 2

    def test_transparency_scales_the_opacity(self):
        """transparency 0.5 mixes half and half; alpha 128 does the same; 0 draws nothing."""
        red = self.layer((0, 0, 255, 255))
        half = draw_overlay(self.photo, (100, 100), [red], self.identity, transparency=0.5)
        assert np.abs(half[50, 50].astype(int) - [50, 50, 178]).max() <= 2
        half_alpha = draw_overlay(self.photo, (100, 100), [self.layer((0, 0, 255, 128))], self.identity)
        assert np.abs(half_alpha[50, 50].astype(int) - half[50, 50]).max() <= 2
        none = draw_overlay(self.photo, (100, 100), [red], self.identity, transparency=0.0)
        assert np.array_equal(none, self.photo)

    def test_layers_are_drawn_in_order_with_their_own_transparency(self):
        """The second layer is drawn over the first; one value per layer."""
        red, green = self.layer((0, 0, 255, 255)), self.layer((0, 255, 0, 255))
        out = draw_overlay(self.photo, (100, 100), [red, green], self.identity, transparency=[1.0, 1.0])
        assert np.abs(out[50, 50].astype(int) - [0, 255, 0]).max() <= 1
        out = draw_overlay(self.photo, (100, 100), [red, green], self.identity, transparency=[1.0, 0.0])
        assert np.abs(out[50, 50].astype(int) - [0, 0, 255]).max() <= 1

    def test_bad_transparency_is_refused(self):
        """Out of range, or a count that fits neither one nor every layer."""
        red = self.layer((0, 0, 255, 255))
        for value in (1.5, -0.1, float("nan"), [0.5, 0.5, 0.5]):
            with pytest.raises(ValueError):
                draw_overlay(self.photo, (100, 100), [red, red], self.identity, transparency=value)

    def test_without_layers_the_model_is_drawn(self, pairs, results):
        """draw_view with no layer draws the render itself: its disk over the
        photo's disk, its black sky dropped (the sky stays the photo's)."""
        pair = pairs["landscape"]
        out = draw_view("overlay", results["landscape"], pair.user, pair.model)
        truth = draw_overlay(pair.user, pair.model.shape, [pair.model], pair.expected)
        disk = disk_mask(pair, shrink=0.9)
        assert np.abs(out.astype(int) - truth.astype(int))[disk].mean() < 6.0
        sky = ~disk_mask(pair, shrink=1.1)
        assert np.array_equal(out[sky], pair.user[sky])


class TestViews:
    def test_matches_view(self, pairs, results):
        """Photo and fitted model side by side (the photo's height, both
        widths) with the inlier matches drawn as lines."""
        pair, result = pairs["portrait"], results["portrait"]
        out = draw_matches(pair.user, pair.model, result)
        height, width = pair.user.shape[:2]
        fit_w, fit_h = fitted_size(MODEL_SIDE, MODEL_SIDE, width, height)
        assert out.shape == (height, width + fit_w, 3)
        bare = draw_matches(pair.user, pair.model, RegistrationResult(result.homography, "SIFT", "opencv", "moon",
                                                                      0, 0, 0, 0))
        assert np.array_equal(bare[:, :width], pair.user)
        saturated = lambda image: (image.max(axis=2).astype(int) - image.min(axis=2) > 120).sum()  # noqa: E731
        assert saturated(out) > saturated(bare) + 1000

    def test_blend_view(self, pairs, results):
        """The fitted model's size; red and green agree where registered."""
        pair, result = pairs["landscape"], results["landscape"]
        out = draw_blend(pair.user, pair.model, result.homography)
        height, width = pair.user.shape[:2]
        fit_w, fit_h = fitted_size(MODEL_SIDE, MODEL_SIDE, width, height)
        assert out.shape == (fit_h, fit_w, 3)
        assert not out[:, :, 0].any()
        green, red = out[:, :, 1].astype(float), out[:, :, 2].astype(float)
        lit = green > 30
        assert np.corrcoef(green[lit], red[lit])[0, 1] > 0.8
        wrong = draw_blend(pair.user, pair.model, result.homography @ np.array([[1, 0, 25], [0, 1, 0], [0, 0, 1.0]]))
        assert np.corrcoef(wrong[:, :, 1][lit], wrong[:, :, 2][lit].astype(float))[0, 1] < 0.8

    def test_unknown_view(self, pairs, results):
        with pytest.raises(ValueError):
            draw_view("sideways", results["square"], pairs["square"].user, pairs["square"].model)

    def test_encode(self):
        """PNG and JPEG bytes; an unknown format is a ValueError."""
        image = np.zeros((20, 30, 3), np.uint8)
        assert encode_image(image).startswith(b"\x89PNG")
        assert encode_image(image, "jpeg").startswith(b"\xff\xd8")
        with pytest.raises(ValueError):
            encode_image(image, "gif")


class TestLayerDecoding:
    def test_keep_alpha(self):
        """decode_image(keep_alpha=True) gives 8-bit BGRA: an RGBA PNG's alpha
        as it is (16-bit scaled to 8), an image without alpha opaque."""
        from moontrek.registration import decode_image

        rgba = np.zeros((20, 30, 4), np.uint8)
        rgba[:] = (10, 20, 30, 40)
        assert decode_image(encode(rgba), keep_alpha=True)[0, 0].tolist() == [10, 20, 30, 40]
        deep = np.zeros((20, 30, 4), np.uint16)
        deep[:] = (256 * 10, 256 * 20, 256 * 30, 256 * 128)
        decoded = decode_image(encode(deep), keep_alpha=True)
        assert decoded.dtype == np.uint8 and decoded[0, 0].tolist() == [10, 20, 30, 128]
        grey = np.full((20, 30), 9, np.uint8)
        assert decode_image(encode(grey), keep_alpha=True)[0, 0].tolist() == [9, 9, 9, 255]
        # Without keep_alpha, the same RGBA is composited onto black, as before.
        assert decode_image(encode(rgba))[0, 0].tolist() == [2, 3, 5]


class TestInlierPoints:
    @pytest.mark.parametrize("pipeline,algorithm", [("moon", "SIFT"), ("classic", "ORB"), ("moon", "ORB")])
    def test_both_pipelines_give_the_inliers(self, pairs, pipeline, algorithm):
        """Each pipeline's result carries its inliers as photo px and fitted
        model px: as many as it counts, mapped onto each other by H, and
        not in the payload."""
        pair = pairs["square"]
        result = register_images(pair.user, pair.model, algorithm, pipeline=pipeline)
        user, model = result.inlier_points
        assert user.shape == model.shape == (result.inliers, 2)
        error = np.hypot(*(map_points(result.homography, user) - model).T)
        assert np.median(error) < 3.0
        assert "inlier_points" not in json.dumps(result.summary())


# -- the endpoint -------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_pair(model):
    """A portrait pair as uploads, with its true answer."""
    pair = make_pair(model, angle=50.0, scale=0.8, shift=(20.0, -30.0), user_size=(540, 760))
    return pair, {"user-file": encode(pair.user), "model-file": encode(pair.model)}


def post(client, path, files, raw_parts=()):
    body, headers = multipart(files)
    if raw_parts:
        boundary = headers["Content-Type"].split("boundary=")[1]
        body = body[: -len(f"--{boundary}--\r\n")] + b"".join(
            f"--{boundary}\r\n".encode() + part + b"\r\n" for part in raw_parts
        ) + f"--{boundary}--\r\n".encode()
    return client.simulate_post(path, body=body, headers=headers)


def assert_envelope(result, status, *fragments):
    assert result.status_code == status, result.text
    assert result.headers["content-type"].startswith("application/json")
    assert result.json["ok"] is False and result.json["status"] == status
    for fragment in fragments:
        assert fragment in result.json["error"], result.json["error"]


class TestOverlayEndpoint:
    @pytest.mark.parametrize("prefix", ["/api", "/pyapi"])
    def test_overlay_image_and_headers(self, client, api_pair, prefix):
        """The default answer: a PNG of the photo's size, X-Homography (the
        3x3 as JSON), X-Registration (the quality fields) and the rate-limit
        headers; the layer drawn where the true homography draws it."""
        pair, files = api_pair
        layer = map_layer()
        result = post(client, f"{prefix}/overlay/SIFT", {**files, "layer-file": encode(layer)})
        assert result.status_code == 200, result.text
        assert result.headers["content-type"] == "image/png"
        image = decode(result.content)
        assert image.shape == pair.user.shape
        homography = np.array(json.loads(result.headers["x-homography"]))
        assert homography.shape == (3, 3)
        registration = json.loads(result.headers["x-registration"])
        assert registration["algorithm"] == "SIFT" and registration["inliers"] > 20
        assert {"reprojection_error_px", "circles", "elapsed_ms", "drawing_ms"} <= set(registration)
        assert all(result.headers.get(name) for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"))
        truth = draw_overlay(pair.user, pair.model.shape, [layer], pair.expected)
        disk = disk_mask(pair)
        assert np.abs(image.astype(int) - truth.astype(int))[disk].mean() < 4.0

    @pytest.mark.parametrize("view,image_format,mime", [
        ("overlay", "jpeg", "image/jpeg"), ("matches", "png", "image/png"), ("blend", "jpeg", "image/jpeg"),
    ])
    def test_each_view(self, client, api_pair, view, image_format, mime):
        """Each view in each format: the right type and size (overlay: the
        photo's; matches: photo and fitted model side by side; blend: the
        fitted model's)."""
        pair, files = api_pair
        result = post(client, f"/api/overlay/orb?view={view}&format={image_format}", files)
        assert result.status_code == 200, result.text
        assert result.headers["content-type"] == mime
        image = decode(result.content)
        height, width = pair.user.shape[:2]
        fit_w, fit_h = fitted_size(MODEL_SIDE, MODEL_SIDE, width, height)
        expected = {"overlay": (height, width), "matches": (height, width + fit_w), "blend": (fit_h, fit_w)}[view]
        assert image.shape[:2] == expected

    def test_rgba_layer_keeps_its_alpha(self, client, api_pair):
        """A layer's transparent pixels are dropped whatever their colour:
        the layer's alpha survives the upload."""
        pair, files = api_pair
        layer = np.zeros((MODEL_SIDE, MODEL_SIDE, 4), np.uint8)
        layer[:, :, 2] = 255  # red everywhere, transparent everywhere
        result = post(client, "/api/overlay/SIFT", {**files, "layer-file": encode(layer)})
        assert result.status_code == 200, result.text
        assert np.array_equal(decode(result.content), pair.user)

    def test_per_layer_transparency(self, client, api_pair):
        """Two layers with 'transparency=1,0': the second is not drawn."""
        pair, files = api_pair
        red = map_layer()
        green = np.zeros_like(red)
        green[100:500, 100:500] = (0, 255, 0, 255)
        both = post(client, "/api/overlay/SIFT?transparency=1,0", {**files, "layer-file": [encode(red), encode(green)]})
        alone = post(client, "/api/overlay/SIFT", {**files, "layer-file": encode(red)})
        assert both.status_code == alone.status_code == 200
        assert np.array_equal(decode(both.content), decode(alone.content))

    def test_eight_layers_and_no_more(self, client, api_pair):
        """Up to 8 layer-file parts are drawn; a ninth is a 400 envelope."""
        _, files = api_pair
        layer = encode(map_layer(200))
        assert post(client, "/api/overlay/ORB", {**files, "layer-file": [layer] * 8}).status_code == 200
        assert_envelope(post(client, "/api/overlay/ORB", {**files, "layer-file": [layer] * 9}), 400,
                        "At most 8", "layer-file")

    def test_unchosen_file_input_is_skipped(self, client, api_pair):
        """An empty layer part without a file name (a browser's empty file
        input) is no layer; an empty one with a name is refused."""
        pair, files = api_pair
        unchosen = b'Content-Disposition: form-data; name="layer-file"; filename=""\r\n' \
                   b"Content-Type: application/octet-stream\r\n\r\n"
        assert post(client, "/api/overlay/ORB", files, raw_parts=[unchosen]).status_code == 200
        assert_envelope(post(client, "/api/overlay/ORB", {**files, "layer-file": b""}), 400, "empty")

    @pytest.mark.parametrize("query,fragment", [
        ("transparency=2", "transparency"), ("transparency=abc", "transparency"), ("transparency=nan", "transparency"),
        ("transparency=0.5,x", "transparency"), ("transparency=0.5,0.5", "2 transparency values"),
        ("format=gif", "format must be one of png, jpeg"), ("format=PNG", "format"),
        ("view=sideways", "view must be one of overlay, matches, blend"),
    ])
    def test_bad_query_values(self, client, api_pair, query, fragment):
        """Bad transparency, format or view values: a 400 envelope saying so."""
        _, files = api_pair
        assert_envelope(post(client, f"/api/overlay/SIFT?{query}", files), 400, fragment)

    def test_failures_are_envelopes(self, client, api_pair):
        """Unknown algorithm 404, a layer that is not an image 400 (naming
        it), an unknown pipeline 422, a missing photo 400."""
        _, files = api_pair
        assert_envelope(post(client, "/api/overlay/FAST", files), 404, "Unknown algorithm")
        assert_envelope(post(client, "/api/overlay/SIFT", {**files, "layer-file": b"not an image"}), 400,
                        "layer-file #1", "not an image")
        assert_envelope(post(client, "/api/overlay/SIFT?pipeline=magic", files), 422, "pipeline")
        assert_envelope(post(client, "/api/overlay/SIFT", {"model-file": files["model-file"]}), 400, "user-file")

    def test_layer_pixel_limit(self, make_config, api_pair):
        """max_image_pixels applies to layers too: 413 naming the layer."""
        import falcon.testing

        from moontrek.app import create_app

        _, files = api_pair
        client = falcon.testing.TestClient(create_app(make_config(max_image_pixels=500_000)))
        big = encode(np.zeros((1000, 1000, 4), np.uint8))
        assert_envelope(post(client, "/api/overlay/ORB", {**files, "layer-file": big}), 413, "layer-file #1")

    def test_shares_the_registrar_budget(self, make_config, api_pair):
        """The overlay spends the registrar's rate-limit budget, under /api
        and /pyapi alike: the third of three requests at 2 per minute is a 429."""
        import falcon.testing

        from moontrek.app import create_app

        _, files = api_pair
        client = falcon.testing.TestClient(create_app(make_config(default_rate_limits=["2 per minute"])))
        assert post(client, "/api/registrar/ORB", files).status_code == 200
        assert post(client, "/pyapi/overlay/ORB", files).headers["X-RateLimit-Remaining"] == "0"
        limited = post(client, "/api/overlay/ORB", files)
        assert_envelope(limited, 429, "requests")
        assert "Retry-After" in limited.headers

    def test_cors_exposes_the_overlay_headers(self, client, api_pair):
        """A page on another origin may read X-Homography and X-Registration."""
        _, files = api_pair
        body, headers = multipart(files)
        result = client.simulate_post("/api/overlay/ORB", body=body,
                                      headers={**headers, "Origin": "https://moon-trek.example"})
        exposed = result.headers["Access-Control-Expose-Headers"]
        assert "X-Homography" in exposed and "X-Registration" in exposed
