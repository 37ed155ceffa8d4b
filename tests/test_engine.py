"""The registration engine, without HTTP."""

import struct

import cv2
import numpy as np
import pytest

from moontrek.registration import (
    ALGORITHM_NAMES,
    AlgorithmUnavailableError,
    ImageError,
    ImageTooLargeError,
    NoMoonError,
    NotEnoughKeypointsError,
    UnknownAlgorithmError,
    algorithm_table,
    corner_error,
    decode_image,
    fit_model_to_user,
    fitted_size,
    get_algorithm,
    register,
)
from moontrek.synthetic import encode, make_pair, render_moon

AVAILABLE = [name for name, entry in algorithm_table().items() if entry.available]


def jpeg_with_orientation(image, orientation):
    """A JPEG whose EXIF says how to turn it upright."""
    data = encode(image, ".jpg", quality=95)
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd
    app1 = b"Exif\x00\x00" + tiff
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]


class TestFittedSize:
    @pytest.mark.parametrize(
        "model,user,expected",
        [
            ((2000, 2000), (693, 689), (689, 689)),  # square model, landscape photo: the photo's height
            ((2000, 2000), (600, 800), (600, 600)),  # square model, portrait photo: the photo's width
            ((2000, 2000), (500, 500), (500, 500)),  # square photo smaller than the model
            ((2000, 2000), (1080, 1920), (1080, 1080)),  # portrait phone photo
            ((2000, 2000), (4032, 3024), (3024, 3024)),  # landscape 12 Mpx photo: enlarged
            ((2000, 2000), (3024, 4032), (3024, 3024)),  # portrait 12 Mpx photo: enlarged
            ((300, 300), (800, 600), (600, 600)),  # a small model is enlarged too
            ((2000, 1000), (800, 600), (800, 400)),  # wide model in a landscape photo: by width
            ((2000, 1000), (600, 800), (600, 300)),  # wide model in a portrait photo: by width
            ((1000, 2000), (800, 600), (300, 600)),  # tall model in a landscape photo: by height
            ((1000, 2000), (600, 800), (400, 800)),  # tall model in a portrait photo: by height
            ((1000, 2000), (300, 900), (300, 600)),  # tall model in a taller photo: by width
            ((3000, 2000), (1000, 1000), (1000, 666)),  # 666.67 truncated, as int() does
        ],
    )
    def test_sync_img_size_convention(self, model, user, expected):
        """The model is fitted inside the photo as MoonRegistration v1.0.3's
        sync_img_size does: by width unless the height would overflow, then
        by height, enlarging when the photo is larger, the other side truncated."""
        assert fitted_size(*model, *user) == expected

    def test_float32_ratio(self):
        """The ratio is a float32, as in the C++: for a 1004 px wide photo
        2000 * (1004/2000 in float32) truncates to 1003, not 1004."""
        assert fitted_size(2000, 2000, 1004, 5000) == (1004, 1003)

    def test_fit_model_to_user_resizes_image(self):
        """fit_model_to_user returns an image of the fitted size."""
        model = np.zeros((2000, 2000, 3), np.uint8)
        assert fit_model_to_user(model, (689, 693, 3)).shape == (689, 689, 3)


class TestDecoding:
    def test_channels_and_depths(self):
        """Grey, BGR, BGRA and 16-bit images all decode to 8-bit BGR."""
        grey = (np.arange(60 * 40) % 256).astype(np.uint8).reshape(40, 60)
        cases = [grey, cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), cv2.cvtColor(grey, cv2.COLOR_GRAY2BGRA),
                 grey.astype(np.uint16) * 257]
        for image in cases:
            decoded = decode_image(encode(image))
            assert decoded.shape == (40, 60, 3) and decoded.dtype == np.uint8
            assert np.array_equal(decoded[:, :, 0], grey)

    def test_transparent_pixels_become_black(self):
        """Transparent pixels are composited onto black sky."""
        image = np.full((20, 20, 4), 200, np.uint8)
        image[:, :, 3] = 255
        image[:, :10, 3] = 0
        decoded = decode_image(encode(image))
        assert decoded[:, :10].max() == 0 and decoded[:, 10:].min() == 200

    def test_partial_alpha_rounded_as_before(self):
        """Partly transparent pixels become colour * alpha / 255 rounded to
        nearest, exactly the 16-bit formula the 8-bit composite replaced."""
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, (37, 53, 4), dtype=np.uint8)
        decoded = decode_image(encode(image))
        alpha = image[:, :, 3:4].astype(np.uint16)
        expected = ((image[:, :, :3].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)
        assert np.array_equal(decoded, expected)

    @pytest.mark.parametrize("reduction", [2, 4, 8])
    def test_reduced_jpeg(self, reduction):
        """A JPEG decoded at 1/2, 1/4 or 1/8 has the reduced size, is turned
        upright from its EXIF orientation too, and matches the full decode
        shrunk by area averaging."""
        rng = np.random.default_rng(1)
        image = cv2.GaussianBlur(rng.integers(0, 256, (96, 160, 3), dtype=np.uint8), (0, 0), 6)
        image[:, :16] = 255  # a bright left edge
        data = jpeg_with_orientation(image, 6)
        full = decode_image(data)
        small = decode_image(data, reduction=reduction)
        assert full.shape[:2] == (160, 96)
        assert small.shape[:2] == (160 // reduction, 96 // reduction)
        shrunk = cv2.resize(full, (96 // reduction, 160 // reduction), interpolation=cv2.INTER_AREA)
        assert np.abs(small.astype(int) - shrunk).mean() < 4

    def test_reduction_ignored_by_other_formats(self):
        """PNG has no reduced decode: the full image comes back."""
        assert decode_image(encode(np.zeros((40, 64, 3), np.uint8)), reduction=4).shape == (40, 64, 3)

    @pytest.mark.parametrize(
        "size,largest,expected",
        [((4032, 3024), 8, 8), ((4032, 3024), 5, 4), ((4000, 3000), 8, 8), ((1001, 800), 8, 1), ((1002, 800), 8, 2),
         ((4032, 3024), 1, 1)],
    )
    def test_jpeg_reduction(self, size, largest, expected):
        """Only reductions that divide both sides are chosen (the reduced grid
        then maps back exactly whatever the orientation), at most ``largest``."""
        from moontrek.registration.images import jpeg_reduction

        assert jpeg_reduction(*size, largest) == expected

    def test_exif_orientation(self):
        """A phone JPEG is turned upright from its EXIF orientation."""
        image = np.zeros((40, 80, 3), np.uint8)
        image[:, :10] = 255  # a bright left edge
        decoded = decode_image(jpeg_with_orientation(image, 6))  # 6: rotate 90 degrees clockwise
        assert decoded.shape[:2] == (80, 40)
        assert decoded[:10].mean() > 200  # the left edge is now at the top

    @pytest.mark.parametrize("data", [b"", b"hello", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20])
    def test_not_an_image(self, data):
        """Empty and undecodable bytes raise ImageError naming the field."""
        with pytest.raises(ImageError, match="user-file"):
            decode_image(data, field="user-file")

    def test_pixel_limit(self):
        """Images over the pixel limit raise ImageTooLargeError with the counts."""
        with pytest.raises(ImageTooLargeError, match="100x50 = 5000") as info:
            decode_image(encode(np.zeros((50, 100), np.uint8)), max_pixels=4999)
        assert info.value.limit == 4999


class TestDispatchTable:
    def test_every_name_present(self):
        """The table has every algorithm, available or with a reason."""
        table = algorithm_table()
        assert list(table) == list(ALGORITHM_NAMES)
        for entry in table.values():
            assert entry.available or entry.reason

    @pytest.mark.parametrize("name", ["SIFT", "ORB", "AKAZE", "BRISK"])
    def test_opencv_detectors_construct(self, name):
        """SIFT, ORB, AKAZE and BRISK are found wherever this OpenCV keeps them."""
        detector = get_algorithm(name.lower()).create()
        keypoints, descriptors = detector.detectAndCompute(cv2.cvtColor(render_moon(200), cv2.COLOR_BGR2GRAY), None)
        assert len(keypoints) > 0 and descriptors is not None

    def test_unknown_name(self):
        """An unknown name raises UnknownAlgorithmError listing the valid ones."""
        with pytest.raises(UnknownAlgorithmError, match="SIFT, ORB, AKAZE, BRISK, SURF"):
            get_algorithm("harris")

    def test_surf_switch(self):
        """SURF switched off by configuration is unavailable with the reason."""
        with pytest.raises(AlgorithmUnavailableError, match="switched off"):
            get_algorithm("SURF", surf_enabled=False)


class TestRegister:
    @pytest.fixture(scope="class")
    def model(self):
        return render_moon(600, seed=3)

    @pytest.mark.parametrize("algorithm", AVAILABLE)
    @pytest.mark.parametrize(
        "angle,scale,user_size",
        [(0.0, 1.0, (600, 600)), (40.0, 0.7, (460, 420)), (-120.0, 0.9, (500, 560))],
    )
    def test_known_homography_recovered(self, model, algorithm, angle, scale, user_size):
        """A synthetic cratered disk warped by a known homography is registered
        back in the server's convention: user pixels -> model fitted to the user."""
        pair = make_pair(model, angle=angle, scale=scale, user_size=user_size, perspective=(0.03, -0.02))
        result = register(encode(pair.user), encode(pair.model), algorithm, pipeline="classic")
        width, height = user_size
        assert corner_error(result.homography, pair.expected, width, height) < 0.015 * max(user_size)
        assert result.inliers >= 4 and result.pipeline == "classic"

    def test_convention_is_the_fitted_model_frame(self, model):
        """The answer lands in the fitted model's pixels, not the original's:
        with a model twice the user's size, the raw model frame is far off."""
        big_model = cv2.resize(model, (1200, 1200))
        pair = make_pair(model, angle=10.0, scale=1.0, user_size=(600, 600))
        result = register(encode(pair.user), encode(big_model), "SIFT", pipeline="classic")
        assert corner_error(result.homography, pair.expected, 600, 600) < 5.0
        raw_frame = np.diag([2.0, 2.0, 1.0]) @ pair.expected
        assert corner_error(result.homography, raw_frame, 600, 600) > 100.0

    def test_blank_images(self):
        """Blank images give the original server's not-enough-keypoints error."""
        blank = encode(np.zeros((300, 300, 3), np.uint8))
        with pytest.raises(NotEnoughKeypointsError, match="No enough keypoints for finding homography matrix"):
            register(blank, blank, "SIFT", pipeline="classic")

    def test_unknown_algorithm_before_decoding(self):
        """The algorithm name is checked before the images are decoded."""
        with pytest.raises(UnknownAlgorithmError):
            register(b"", b"", "nope")


class TestReducedDecode:
    """register(reduced_decode=True), the server's default: a large JPEG photo
    decoded at a fraction of its size, the answer in full-size pixels."""

    @pytest.fixture(scope="class")
    def phone_photo(self):
        """A 2048 x 1536 JPEG whose Moon spans 90% of the short side, and a 1000 px render."""
        model = render_moon(1000, seed=5)
        radius = 0.45 * 1536
        pair = make_pair(model, angle=65.0, scale=radius / (0.46 * 1000), shift=(60.0, -30.0), user_size=(2048, 1536))
        return pair, encode(pair.user, ".jpg", quality=92), encode(model)

    @pytest.mark.parametrize("algorithm", ["SIFT", "ORB"])
    def test_same_answer_in_full_resolution(self, phone_photo, algorithm):
        """The reduced decode is used (the Moon's radius, 690 px, allows it)
        and its homography and circles are in the full photo's pixels: as
        accurate as the full decode's."""
        pair, user, model = phone_photo
        full = register(user, model, algorithm)
        reduced = register(user, model, algorithm, reduced_decode=True)
        assert "decoded_reduction" not in full.extras
        assert reduced.extras["decoded_reduction"] >= 2
        tolerance = 0.004 * 2048
        assert corner_error(full.homography, pair.expected, 2048, 1536) < tolerance
        assert corner_error(reduced.homography, pair.expected, 2048, 1536) < tolerance
        for side in ("user", "model"):
            a, b = full.extras["circles"][side], reduced.extras["circles"][side]
            assert abs(a["x"] - b["x"]) < 4 and abs(a["y"] - b["y"]) < 4 and abs(a["radius"] / b["radius"] - 1) < 0.01
        # The inlier points (drawn by the matches view) are in the same frames as the homography.
        user_points, model_points = reduced.inlier_points
        from moontrek.registration.geometry import map_points

        errors = np.hypot(*(map_points(reduced.homography, user_points) - model_points).T)
        assert np.mean(errors) == pytest.approx(reduced.extras["reprojection_error_px"], rel=0.05)

    def test_small_moon_decoded_in_full(self):
        """A Moon too small to spare pixels is decoded at full size."""
        model = render_moon(600, seed=6)
        pair = make_pair(model, angle=10.0, scale=150 / (0.46 * 600), user_size=(1600, 1200))
        result = register(encode(pair.user, ".jpg", quality=92), encode(model), "SIFT", reduced_decode=True)
        assert "decoded_reduction" not in result.extras
        assert corner_error(result.homography, pair.expected, 1600, 1200) < 0.005 * 1600

    def test_classic_pipeline_never_reduced(self, phone_photo):
        """The classic pipeline keeps the original's full-frame computation."""
        pair, user, model = phone_photo
        result = register(user, model, "ORB", pipeline="classic", reduced_decode=True)
        assert "decoded_reduction" not in result.extras


class TestConcurrentDecode:
    def test_photo_error_first(self):
        """With both files bad, the photo's error is raised, as when they
        were decoded one after the other; a good model with a bad photo too."""
        with pytest.raises(ImageError, match="user-file"):
            register(b"not an image", b"nor this", "SIFT")
        with pytest.raises(ImageError, match="user-file is a damaged PNG"):
            register(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, encode(render_moon(200, seed=1)), "SIFT")

    def test_model_error(self):
        """A bad model with a good photo names the model-file."""
        with pytest.raises(ImageError, match="model-file"):
            register(encode(render_moon(200, seed=1)), b"\xff\xd8\xff broken", "SIFT")


class TestConcurrentSides:
    """A request running alone prepares the model's side on the pool while
    its thread prepares the photo's; under load both run on its thread."""

    @pytest.fixture(scope="class")
    def files(self):
        model = render_moon(800, seed=11)
        pair = make_pair(model, angle=35.0, scale=0.6, user_size=(520, 480))
        return encode(pair.user), encode(model)

    @pytest.mark.parametrize("algorithm", AVAILABLE)
    def test_same_answer_alone_and_under_load(self, files, monkeypatch, algorithm):
        import moontrek.registration.engine as engine

        monkeypatch.setattr(engine, "_alone", lambda: True)
        alone = register(*files, algorithm)
        monkeypatch.setattr(engine, "_alone", lambda: False)
        loaded = register(*files, algorithm)
        np.testing.assert_allclose(alone.homography, loaded.homography, rtol=1e-9, atol=1e-9)
        assert (alone.inliers, alone.keypoints_user, alone.keypoints_model) == (
            loaded.inliers, loaded.keypoints_user, loaded.keypoints_model
        )

    def test_a_bad_model_is_said_before_a_moonless_photo(self):
        """Decoding errors come before the pipeline's, as in sequence."""
        blank = encode(np.full((300, 300, 3), 30, np.uint8))
        with pytest.raises(ImageError, match="model-file"):
            register(blank, b"\xff\xd8\xff broken", "ORB")

    def test_a_moonless_photo_is_named(self, files):
        blank = encode(np.full((300, 300, 3), 30, np.uint8))
        with pytest.raises(NoMoonError, match="user-file"):
            register(blank, files[1], "ORB")

    def test_the_pool_side_never_outlives_a_failed_request(self):
        """When the photo's side fails while the model's is running, the
        model's is waited for before the error leaves: no work of a
        finished request keeps running (one not yet started is cancelled)."""
        import threading

        import moontrek.registration.engine as engine

        model_started, photo_failed, model_done = threading.Event(), threading.Event(), threading.Event()

        def photo():
            assert model_started.wait(5)
            photo_failed.set()
            raise ImageError("The user-file is broken.", field="user-file")

        def model():
            model_started.set()
            photo_failed.wait(5)
            threading.Event().wait(0.05)
            model_done.set()

        with pytest.raises(ImageError):
            engine._both(photo, model)
        assert model_done.is_set()


class TestRealDemoData:
    def test_demo_pairs_decode_in_the_reference_frame(self):
        """The real demo photos and 2000x2000 RGBA renders decode, and the
        fitted model has the size the reference homographies assume."""
        import json

        from tests.conftest import shared_data

        folder = shared_data("registrate")
        reference = json.loads((folder / "reference.json").read_text())
        for pair in reference["pairs"].values():
            user = decode_image((folder / pair["user"]).read_bytes())
            model = decode_image((folder / pair["model"]).read_bytes())
            assert [user.shape[1], user.shape[0]] == pair["user_size"]
            fitted = fit_model_to_user(model, user.shape)
            assert fitted.shape[:2] == (min(user.shape[:2]),) * 2
