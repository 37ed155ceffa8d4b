"""Tests for moontrek.registration.surf (our SURF, OpenCV-compatible)."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from moontrek.registration import surf as surf_mod
from moontrek.registration.surf import SURF, SURF_create
from tests.conftest import keypoint_rows

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "surf"


def _cratered(side=360, seed=7):
    """A textured, cratered grey image: blobs of many sizes on smooth noise."""
    rng = np.random.default_rng(seed)
    img = np.full((side, side), 110, np.float32)
    noise = cv2.resize(rng.normal(0, 30, (side // 8, side // 8)).astype(np.float32),
                       (side, side), interpolation=cv2.INTER_CUBIC)
    img += noise
    for _ in range(140):
        cx, cy = rng.uniform(0, side, 2)
        r = rng.uniform(3, 22)
        cv2.circle(img, (int(cx), int(cy)), int(r), float(rng.uniform(40, 220)), -1)
        cv2.circle(img, (int(cx), int(cy)), int(r), float(rng.uniform(0, 255)), 2)
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def cratered():
    return _cratered()


def _parity_cases():
    readme = SHARED / "README.json"
    if not readme.exists():
        return [pytest.param(None, marks=pytest.mark.skip(
            reason="../shared/data/surf is absent: no OpenCV reference output to compare with"))]
    files = json.loads(readme.read_text())["files"]
    return [pytest.param((name, meta), id=name) for name, meta in sorted(files.items())]


class TestOpenCVParity:
    @pytest.mark.parametrize("case", _parity_cases())
    def test_matches_opencv_reference(self, case):
        """Keypoints and descriptors agree with OpenCV's non-free SURF within the acceptance bar."""
        if not SHARED.exists():
            pytest.skip("../shared/data/surf is absent: no OpenCV reference output to compare with")
        name, meta = case
        ref = np.load(SHARED / name)
        ref_kp, ref_desc = ref["keypoints"].astype(np.float64), ref["descriptors"]
        img = cv2.imread(str(SHARED / meta["image"]), cv2.IMREAD_GRAYSCALE)
        surf = SURF(100, 4, 3, extended=meta["extended"], upright=meta["upright"])
        kps, desc = surf.detectAndCompute(img, None)
        ours = keypoint_rows(kps)
        assert len(kps) == len(ref_kp)
        assert np.abs(ours[:, :2] - ref_kp[:, :2]).max() <= 1e-3
        for col in (2, 5, 6):  # size, octave, class_id
            np.testing.assert_array_equal(ours[:, col], ref_kp[:, col])
        dang = np.abs((ours[:, 3] - ref_kp[:, 3] + 180.0) % 360.0 - 180.0)
        assert np.mean(dang < 0.1) >= 0.99
        dist = np.linalg.norm(desc.astype(np.float64) - ref_desc, axis=1)
        tol = 1e-4 if meta["upright"] else 1e-2
        assert np.mean(dist < tol) >= 0.98


class TestInterface:
    def test_feature2d_metadata(self):
        """descriptorSize/Type/defaultNorm follow OpenCV's SURF for both descriptor lengths."""
        assert SURF().descriptorSize() == 64
        assert SURF(extended=True).descriptorSize() == 128
        assert SURF().descriptorType() == cv2.CV_32F
        assert SURF().defaultNorm() == cv2.NORM_L2

    def test_surf_create_passes_parameters(self):
        """SURF_create builds a SURF with the given parameters."""
        s = SURF_create(hessianThreshold=400, nOctaves=3, nOctaveLayers=2, extended=True,
                        upright=True)
        assert (s.hessianThreshold, s.nOctaves, s.nOctaveLayers, s.extended, s.upright) == (
            400, 3, 2, True, True)

    def test_descriptor_shapes_and_norm(self, cratered):
        """Descriptors are float32 (N, 64|128), one row per keypoint, unit L2 norm."""
        for extended, dim in ((False, 64), (True, 128)):
            kps, desc = SURF(extended=extended).detectAndCompute(cratered)
            assert len(kps) > 50
            assert desc.dtype == np.float32 and desc.shape == (len(kps), dim)
            np.testing.assert_allclose(np.linalg.norm(desc, axis=1), 1.0, atol=1e-5)

    def test_keypoint_field_conventions(self, cratered):
        """octave in 0..nOctaves-1, class_id in {-1,0,1}, angle in [0,360), sorted by response."""
        kps = SURF().detect(cratered)
        a = keypoint_rows(kps)
        assert set(np.unique(a[:, 5])) <= {0, 1, 2, 3}
        assert set(np.unique(a[:, 6])) <= {-1, 0, 1}
        assert (a[:, 3] >= 0).all() and (a[:, 3] < 360).all()
        assert (np.diff(a[:, 4]) <= 0).all()
        assert (a[:, 4] > 100).all()

    def test_upright_angle_is_270(self, cratered):
        """Upright mode reports every angle as 270 degrees, as OpenCV does."""
        kps = SURF(upright=True).detect(cratered)
        assert kps and all(k.angle == 270 for k in kps)

    def test_deterministic(self, cratered):
        """Two runs give identical keypoints and descriptors."""
        k1, d1 = SURF().detectAndCompute(cratered)
        k2, d2 = SURF().detectAndCompute(cratered)
        np.testing.assert_array_equal(keypoint_rows(k1), keypoint_rows(k2))
        np.testing.assert_array_equal(d1, d2)

    def test_detect_then_compute_equals_detect_and_compute(self, cratered):
        """compute() on detect()'s keypoints reproduces detectAndCompute()."""
        surf = SURF()
        kps, desc = surf.detectAndCompute(cratered)
        k2, d2 = surf.compute(cratered, surf.detect(cratered))
        np.testing.assert_array_equal(keypoint_rows(kps), keypoint_rows(k2))
        np.testing.assert_allclose(desc, d2, atol=1e-6)

    def test_max_keypoint_size_drops_only_the_larger(self, cratered):
        """setMaxKeypointSize (moontrek's own) leaves out the keypoints larger than
        it and keeps every other keypoint and descriptor as they were; provided
        keypoints are all described."""
        every, every_desc = SURF().detectAndCompute(cratered)
        sizes = np.array([k.size for k in every])
        cap = float(np.percentile(sizes, 80))
        surf = SURF()
        surf.setMaxKeypointSize(cap)
        assert surf.getMaxKeypointSize() == cap
        kept, kept_desc = surf.detectAndCompute(cratered)
        small = sizes <= cap
        assert 0 < len(kept) == small.sum() < len(every)
        np.testing.assert_array_equal(keypoint_rows(kept), keypoint_rows(every)[small])
        np.testing.assert_array_equal(kept_desc, every_desc[small])
        provided, _ = surf.compute(cratered, every)
        assert len(provided) == len(every)

    def test_use_provided_keypoints(self, cratered):
        """useProvidedKeypoints describes the given keypoints instead of detecting."""
        surf = SURF()
        kps = surf.detect(cratered)[:10]
        k2, d2 = surf.detectAndCompute(cratered, None, useProvidedKeypoints=True, keypoints=kps)
        assert len(k2) == 10 and d2.shape == (10, 64)

    def test_colour_input_is_converted(self, cratered):
        """A BGR image gives the same result as its BGR->GRAY conversion."""
        bgr = cv2.cvtColor(cratered, cv2.COLOR_GRAY2BGR)
        k1, d1 = SURF().detectAndCompute(bgr)
        k2, d2 = SURF().detectAndCompute(cratered)
        np.testing.assert_array_equal(keypoint_rows(k1), keypoint_rows(k2))
        np.testing.assert_array_equal(d1, d2)


class TestBadInput:
    @pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64])
    def test_non_8bit_is_refused(self, dtype):
        """16-bit and float images raise ValueError (no silent rescaling)."""
        with pytest.raises(ValueError, match="8-bit"):
            SURF().detectAndCompute(np.zeros((64, 64), dtype))

    @pytest.mark.parametrize("shape", [(0, 0), (0, 50), (50, 0)])
    def test_empty_image_gives_empty_result(self, shape):
        """An empty image yields no keypoints and a (0, 64) float32 descriptor array."""
        kps, desc = SURF().detectAndCompute(np.zeros(shape, np.uint8))
        assert kps == [] and desc.shape == (0, 64) and desc.dtype == np.float32

    def test_tiny_image_gives_empty_result(self):
        """An image smaller than the smallest filter yields empty results."""
        kps, desc = SURF(extended=True).detectAndCompute(np.full((8, 8), 200, np.uint8))
        assert kps == [] and desc.shape == (0, 128)

    def test_constant_image_gives_empty_result(self):
        """A constant image has no Hessian response and yields empty results."""
        kps, desc = SURF().detectAndCompute(np.full((200, 300), 77, np.uint8))
        assert kps == [] and desc.shape == (0, 64)

    def test_bad_shape_is_refused(self):
        """A 2-channel image is not a grey or colour image: ValueError."""
        with pytest.raises(ValueError):
            SURF().detect(np.zeros((32, 32, 2), np.uint8))

    def test_mask_of_wrong_size_is_refused(self, cratered):
        """A mask whose shape differs from the image raises ValueError."""
        with pytest.raises(ValueError, match="mask shape"):
            SURF().detect(cratered, np.ones((10, 10), np.uint8))

    def test_mask_of_wrong_type_is_refused(self, cratered):
        """A float mask raises ValueError."""
        with pytest.raises(ValueError, match="mask"):
            SURF().detect(cratered, np.ones(cratered.shape, np.float32))


class TestMask:
    def test_keypoints_stay_inside_mask(self, cratered):
        """With a half-image mask, every keypoint lies where the mask is set."""
        mask = np.zeros(cratered.shape, np.uint8)
        mask[:, : cratered.shape[1] // 2] = 255
        kps = SURF().detect(cratered, mask)
        full = SURF().detect(cratered)
        assert 0 < len(kps) < len(full)
        assert all(mask[int(round(k.pt[1])), int(round(k.pt[0]))] for k in kps)

    def test_full_mask_changes_nothing(self, cratered):
        """An all-ones mask gives the same keypoints as no mask."""
        a = SURF().detect(cratered, np.ones(cratered.shape, np.uint8))
        b = SURF().detect(cratered)
        np.testing.assert_array_equal(keypoint_rows(a), keypoint_rows(b))

    def test_empty_mask_gives_nothing(self, cratered):
        """An all-zero mask gives no keypoints."""
        kps, desc = SURF().detectAndCompute(cratered, np.zeros(cratered.shape, np.uint8))
        assert kps == [] and desc.shape == (0, 64)


def _recovered_homography(img, warped, surf):
    k1, d1 = surf.detectAndCompute(img)
    k2, d2 = surf.detectAndCompute(warped)
    matches = cv2.BFMatcher(cv2.NORM_L2).knnMatch(d1, d2, k=2)
    good = [m for m, n in (p for p in matches if len(p) == 2) if m.distance < 0.75 * n.distance]
    assert len(good) >= 15
    src = np.float32([k1[m.queryIdx].pt for m in good])
    dst = np.float32([k2[m.trainIdx].pt for m in good])
    h, _ = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
    assert h is not None
    return h


class TestWarpRobustness:
    @pytest.mark.parametrize("angle,scale", [(30, 1.0), (90, 1.0), (0, 0.7), (0, 1.5), (30, 0.7)])
    def test_homography_recovered(self, cratered, angle, scale):
        """Matching across a known rotation/scale recovers it to within 3 px at the corners."""
        h, w = cratered.shape
        rot = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        out = (int(w * 1.5), int(h * 1.5)) if scale > 1 else (w, h)
        rot[:, 2] += ((out[0] - w) / 2, (out[1] - h) / 2)
        warped = cv2.warpAffine(cratered, rot, out)
        truth = np.vstack([rot, [0, 0, 1]])
        est = _recovered_homography(cratered, warped, SURF())
        corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]]).reshape(-1, 1, 2)
        err = cv2.perspectiveTransform(corners, est) - cv2.perspectiveTransform(corners, truth)
        assert np.abs(err).max() < 3.0


def _oriented_inputs(img, n, seed, border=False):
    """Random keypoint frames (x, y, size, angle, win) for the window samplers."""
    rng = np.random.default_rng(seed)
    h, w = img.shape
    f32 = np.float32
    size = rng.uniform(9, 120, n).astype(f32)
    lo, hi = (-15, 15) if border else (0.35, 0.65)
    x = (rng.uniform(lo, hi, n) * (w if not border else 1)).astype(f32)
    y = (rng.uniform(lo, hi, n) * (h if not border else 1)).astype(f32)
    if border:  # put them on (or just outside) a random edge
        side = rng.integers(0, 4, n)
        x = np.where(side == 0, x, np.where(side == 1, w - 1 + x, rng.uniform(0, w, n)))
        y = np.where(side == 2, y, np.where(side == 3, h - 1 + y, rng.uniform(0, h, n)))
        x, y = x.astype(f32), y.astype(f32)
    angle = rng.uniform(0, 360, n).astype(f32)
    angle[: n // 8] = rng.choice([0, 90, 180, 270], n // 8)
    win = (f32(21) * (size * f32(1.2) / f32(9))).astype(np.int64)
    return x, y, size, angle, win


class TestFastPaths:
    """The batched fast paths agree with the straightforward computations they replace."""

    def test_stacked_area_resize_equals_per_window_resize(self):
        """One INTER_AREA resize of stacked windows equals resizing each
        window alone; the weight-matrix resize for sides that are no multiple
        of 21 rounds at most one output in a hundred the other way, by one
        level, and multiples of 21 are OpenCV's to the bit (400 and 700 take
        the products in row and column blocks)."""
        rng = np.random.default_rng(0)
        for w in (21, 22, 29, 42, 50, 63, 64, 97, 150, 211, 400, 700):
            k = max(1, 6000 // w)
            stack = rng.integers(0, 256, (k, w, w), dtype=np.uint8)
            half = stack[: k // 2].reshape(-1, w)
            stack[: k // 2] = cv2.GaussianBlur(half, (0, 0), 2).reshape(-1, w, w)
            want = np.stack([cv2.resize(p, (21, 21), interpolation=cv2.INTER_AREA) for p in stack])
            exact = surf_mod._area_resize_stack(stack.reshape(-1, w), k, exact=True)
            np.testing.assert_array_equal(exact, want)
            got = surf_mod._area_resize_stack(stack.reshape(-1, w), k)
            assert got.dtype == np.uint8 and got.shape == want.shape
            diff = np.abs(got.astype(int) - want)
            if w % 21 == 0:
                np.testing.assert_array_equal(got, want)
            assert diff.max() <= 1, w
            assert np.mean(diff > 0) < 0.01, w

    def test_constant_frame_needs_no_clamp(self, cratered, monkeypatch):
        """On an image whose outer rows and columns hold one value (the moon
        pipeline's canvases: the disk on one grey), windows reaching off it
        skip the clamp to the nearest pixel and give the same descriptors to
        the bit; an image without such a frame still takes the clamp."""
        img = cratered.copy()
        img[:2], img[-2:], img[:, :2], img[:, -2:] = 128, 128, 128, 128
        assert surf_mod._constant_frame(img) and not surf_mod._constant_frame(cratered)
        kp, fast = SURF().detectAndCompute(img, None)
        assert len(kp) > 100
        clamps = []
        clamp = surf_mod._clamp_outside

        def counted(*args):
            clamps.append(1)
            return clamp(*args)

        monkeypatch.setattr(surf_mod, "_clamp_outside", counted)
        SURF().detectAndCompute(img, None)
        assert not clamps
        monkeypatch.setattr(surf_mod, "_constant_frame", lambda image: False)
        kp2, clamped = SURF().detectAndCompute(img, None)
        assert clamps
        assert keypoint_rows(kp2).tolist() == keypoint_rows(kp).tolist()
        np.testing.assert_array_equal(fast, clamped)

    def test_blocked_matrix_products_equal_one_product(self, monkeypatch):
        """Row and column blocks (kept small for OpenBLAS's one thread) give
        the same products as one call."""
        monkeypatch.setattr(surf_mod, "_GEMM_ONE_THREAD", 500)
        rng = np.random.default_rng(3)
        for left, right in (((4, 30, 30), (30, 21)), ((21, 30), (4, 30, 21)), ((3, 7, 40), (40, 50))):
            a = rng.standard_normal(left).astype(np.float32)
            b = rng.standard_normal(right).astype(np.float32)
            np.testing.assert_allclose(surf_mod._matmul_one_thread(a, b), np.matmul(a, b), rtol=1e-5, atol=1e-5)

    def test_area_weights_average(self):
        """Each output's weights cover exactly its share of the window."""
        for w in (22, 29, 50, 97, 400):
            weights, transposed = surf_mod._area_weights(w)
            np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
            np.testing.assert_allclose(weights.sum(axis=0), 21 / w, atol=1e-6)
            np.testing.assert_array_equal(transposed, weights.T)

    @pytest.mark.parametrize("border", [False, True], ids=["interior", "border"])
    def test_remap_windows_match_exact_sampler(self, cratered, border):
        """Windows from cv2.remap equal OpenCV SURF's own sampling up to rare 1-level flips."""
        if not surf_mod._remap_is_exact():
            pytest.skip("this OpenCV build quantises remap positions; the exact sampler is used")
        x, y, size, angle, win = _oriented_inputs(cratered, 60, seed=1, border=border)
        got = surf_mod._windows_oriented(cratered, x, y, size, angle, win)
        surf_mod._REMAP_EXACT = False
        try:
            want = surf_mod._windows_oriented(cratered, x, y, size, angle, win)
        finally:
            surf_mod._REMAP_EXACT = None
        diff = np.abs(got.astype(int) - want)
        assert diff.max() <= 1
        assert np.mean(diff > 0) < 0.01

    @pytest.mark.parametrize("border", [False, True], ids=["interior", "border"])
    def test_remap_bands_do_not_change_windows(self, cratered, border, monkeypatch):
        """Windows remapped in row bands (border strips fixed apart) equal whole-window remaps."""
        x, y, size, angle, win = _oriented_inputs(cratered, 80, seed=2, border=border)
        monkeypatch.setattr(surf_mod, "_BAND", 1 << 26)  # every window in one band
        whole = surf_mod._windows_oriented(cratered, x, y, size, angle, win)
        for band in (1 << 12, 777):  # large windows in many bands, some of one row
            monkeypatch.setattr(surf_mod, "_BAND", band)
            banded = surf_mod._windows_oriented(cratered, x, y, size, angle, win)
            np.testing.assert_array_equal(banded, whole)

    def test_safe_columns_are_inside_the_bilinear_domain(self):
        """Columns reported surely inside keep every sample's 2 x 2 neighbourhood in the image,
        and the columns left out reach the border (none is left out needlessly far inside)."""
        rng = np.random.default_rng(5)
        h, w_img = 300, 420
        for _ in range(200):
            w = int(rng.integers(21, 700))
            a = np.deg2rad(rng.choice([0.0, 90.0, 180.0, 270.0, rng.uniform(0, 360)]))
            s, c = -np.sin(a), np.cos(a)
            sx, sy = rng.uniform(-w, w_img + w), rng.uniform(-w, h + w)
            lo, hi = surf_mod._safe_columns(sx, sy, s, c, w, h, w_img)
            i = np.arange(w)[:, None]
            j = np.arange(w)[None, :]
            px = (sx + i * s + j * c).astype(np.float32)
            py = (sy + i * c - j * s).astype(np.float32)
            inside = (px >= 0) & (px < w_img - 1) & (py >= 0) & (py < h - 1)
            safe = (j >= lo[:, None]) & (j < hi[:, None])
            assert not np.any(safe & ~inside)
            deep = ((px >= 1) & (px < w_img - 2) & (py >= 1) & (py < h - 2))
            assert not np.any(deep & ~safe)

    def test_fallback_sampler_gives_same_descriptors(self, cratered):
        """Without a float-exact cv2.remap, the NumPy sampler gives nearly the same descriptors."""
        k1, d1 = SURF().detectAndCompute(cratered)
        surf_mod._REMAP_EXACT = False
        try:
            k2, d2 = SURF().detectAndCompute(cratered)
        finally:
            surf_mod._REMAP_EXACT = None
        np.testing.assert_array_equal(keypoint_rows(k1), keypoint_rows(k2))
        dist = np.linalg.norm(d1 - d2, axis=1)
        assert np.mean(dist < 1e-2) >= 0.99

    def test_detection_does_not_depend_on_block_size(self, cratered, monkeypatch):
        """Row-blocked determinant maps and extremum search give identical keypoints."""
        full = keypoint_rows(SURF().detect(cratered))
        monkeypatch.setattr(surf_mod, "_DET_BLOCK", 700)  # a few rows per block
        blocked = keypoint_rows(SURF().detect(cratered))
        np.testing.assert_array_equal(full, blocked)

    def test_orientation_does_not_depend_on_chunking(self, cratered, monkeypatch):
        """Orientation in small chunks gives the same angles as in one chunk."""
        kps = SURF().detect(cratered)
        monkeypatch.setattr(surf_mod, "_ORI_CHUNK", 7)
        small = keypoint_rows(SURF().detect(cratered))
        np.testing.assert_array_equal(keypoint_rows(kps), small)

    def test_orientation_window_sums_match_brute_force(self, cratered):
        """Coarse-bin window sums pick the sector found by summing each 60-degree window."""
        kps = SURF(upright=True).detect(cratered)
        f32 = np.float32
        x = np.array([k.pt[0] for k in kps], f32)
        y = np.array([k.pt[1] for k in kps], f32)
        size = np.array([k.size for k in kps], f32)
        integral = surf_mod._integral(cratered)
        angle, _ = surf_mod._orientation(integral, x, y, size)
        # Brute force from the same per-sample responses.
        gx, gy = _sample_responses(integral, x, y, size)
        ang = np.rint(surf_mod._fast_atan2_deg(gy, gx)).astype(int) % 360
        want = np.empty(x.size, f32)
        for i in range(x.size):
            best, bx, by = -1.0, 0.0, 0.0
            for a in range(0, 360, 5):
                d = np.abs(ang[i] - a)
                sel = (d < 30) | (d > 330)
                sx = f32(gx[i][sel].astype(np.float64).sum())
                sy = f32(gy[i][sel].astype(np.float64).sum())
                mod = sx * sx + sy * sy
                if mod > best:
                    best, bx, by = mod, sx, sy
            want[i] = surf_mod._fast_atan2_deg(np.array([-by], f32), np.array([bx], f32))[0]
        assert np.mean(np.abs(angle - want) < 1e-3) >= 0.995

    def test_fast_atan2_is_opencv_polynomial(self):
        """cv2.phase-based atan2 equals SURF.md's polynomial within float32 rounding, in [0, 360]."""
        rng = np.random.default_rng(3)
        scale = rng.choice([1e-3, 1.0, 100.0], 20000)
        x = (rng.normal(size=20000) * scale).astype(np.float32)
        y = (rng.normal(size=20000) * scale).astype(np.float32)
        x[:50] = 0
        y[25:75] = 0
        got = surf_mod._fast_atan2_deg(y, x)
        ax, ay = np.abs(x).astype(np.float64), np.abs(y).astype(np.float64)
        c = np.minimum(ax, ay) / (np.maximum(ax, ay) + np.finfo(np.float64).eps)
        c2 = c * c
        a = (((-0.04432655554792128 * c2 + 0.1555786518463281) * c2 - 0.3258083974640975) * c2
             + 0.9997878412794807) * c * 180.0 / np.pi
        a = np.where(ax >= ay, a, 90.0 - a)
        a = np.where(x < 0, 180.0 - a, a)
        want = np.where(y < 0, 360.0 - a, a)
        assert np.abs(got - want).max() < 1e-4
        assert got.min() >= 0 and got.max() <= 360

    def test_fast_atan2_does_not_depend_on_position(self):
        """A value gets the same angle alone, at any offset, or inside a large array."""
        rng = np.random.default_rng(4)
        x = rng.normal(size=1000).astype(np.float32)
        y = rng.normal(size=1000).astype(np.float32)
        whole = surf_mod._fast_atan2_deg(y, x)
        for lo, hi in ((0, 1), (3, 10), (17, 600), (999, 1000)):
            np.testing.assert_array_equal(surf_mod._fast_atan2_deg(y[lo:hi], x[lo:hi]), whole[lo:hi])


def _sample_responses(integral, x, y, size):
    """Per-sample weighted Haar responses of the orientation search, straight from SURF.md."""
    f32 = np.float32
    hp1, wp1 = integral.shape
    s = size * f32(1.2) / f32(9)
    g = (2 * np.rint(f32(2) * s)).astype(np.int64)
    gx = np.zeros((x.size, surf_mod._APT_X.size), f32)
    gy = np.zeros_like(gx)
    ii = integral.astype(np.int64)
    for k in range(x.size):
        gk, hk = int(g[k]), int(g[k]) // 2
        half = f32(gk - 1) / f32(2)
        wgt = f32(1) / (f32(hk) * f32(gk))
        for t in range(surf_mod._APT_X.size):
            sx = int(np.rint((x[k] + surf_mod._APT_X[t] * s[k]) - half))
            sy = int(np.rint((y[k] + surf_mod._APT_Y[t] * s[k]) - half))
            if not (0 <= sy < hp1 - gk and 0 <= sx < wp1 - gk):
                continue

            def box(y0, x0, y1, x1):
                return f32(ii[sy + y1, sx + x1] - ii[sy + y0, sx + x1]
                           - ii[sy + y1, sx + x0] + ii[sy + y0, sx + x0])

            vx = box(0, 0, gk, hk) * -wgt + box(0, hk, gk, gk) * wgt
            vy = box(0, 0, hk, gk) * wgt + box(hk, 0, gk, gk) * -wgt
            gx[k, t] = vx * surf_mod._APT_W[t]
            gy[k, t] = vy * surf_mod._APT_W[t]
    return gx, gy


class TestResources:
    def test_peak_memory_is_a_few_image_maps(self):
        """Peak traced memory is a few float32 copies of the image (no full map per filter)."""
        import tracemalloc

        img = _cratered(side=1200, seed=5)
        SURF().detectAndCompute(img[:100, :100])
        tracemalloc.start()
        try:
            SURF().detectAndCompute(img)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 6 * img.size * 4
