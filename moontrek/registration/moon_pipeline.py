"""The Moon-aware pipeline: register the two Moon disks, not the two frames.

A photo and a render of the Moon share one object seen face-on, so once each
disk is cropped and resampled to a common working radius the remaining motion
is close to a rotation about the centre. The pipeline exploits that:

1. find the disk in each image (:func:`~moontrek.registration.moon.find_moon`);
2. resample both disks to ``WORK_RADIUS`` (cost no longer grows with the
   photo's megapixels) and normalise them photometrically: grey-world
   balanced grey (colour casts vanish), the disk's low frequencies divided
   out (the render's terminator against the photo's flat full Moon) and
   local contrast equalised;
3. detect inside a circle slightly within the limb only (the limb itself is
   the strongest, least distinctive edge in both images);
4. match with a ratio test and mutual consistency, then keep the matches
   whose distances from the centre agree and whose rotation about the centre
   agrees with the dominant one (a vote: far more robust than sampling when
   most matches are wrong, as they are between a photo and a render);
5. estimate a similarity with RANSAC (LM-refined), and replace it by a
   homography (USAC_MAGSAC, then least squares + LM on its inliers) only
   when that has at least 15 inliers, no fewer than the similarity, spread
   over at least 30% of the disk. Measured on a hard synthetic set (small,
   blurred, noisy, flattened, occluded disks with mild perspective), a
   homography alone succeeds 33-37/40 with RANSAC, 31-40 with USAC_ACCURATE
   and 35-38 with USAC_MAGSAC; this similarity-first rule 37-40; on the
   real pair with branches a free homography drifts to 3-11% of the frame
   while the similarity stays within 2%;
6. refuse implausible answers with the documented registration errors,
   after the fallbacks (guided matching, ECC, whose answer is taken as a
   turn of the globe: _on_sphere, a finer canvas, and last another
   detector's point matches: ALGORITHM_SETTINGS' "companion");
7. compose back to the server's convention (user pixels to pixels of the
   model fitted to the user image).
"""

import contextlib
import dataclasses
import functools
import threading

import cv2
import numpy as np

from . import surf_pool
from .algorithms import get_algorithm
from .errors import HomographyNotFoundError, NoMoonError, NotEnoughKeypointsError
from .geometry import fitted_size, map_points
from .moon import MAX_WORK_PIXELS, Circle, _brightness, find_moon, find_moon_how, limb_is_sharp, moon_candidates
from .result import RegistrationResult

__all__ = [
    "DiskSide", "prepare_side", "register_moon", "register_disks", "register_sides", "normalise_disk", "find_moon_on_limb",
    "WORK_RADIUS",
]

WORK_RADIUS = 200
MIN_WORK_RADIUS = 128
# The canvas leaves room around the disk so detectors see the whole disk.
CANVAS_FACTOR = 1.08
# Fraction of the radius inside which keypoints are detected.
MASK_FRACTION = 0.93
# Low frequencies below this fraction of the radius are divided out.
SHADING_SIGMA = 0.08
# A light blur equalises a sharp render with a soft photo.
DETAIL_SIGMA = 1.0
# Darker than this fraction of the disk's median is an occluder.
OCCLUDER_FRACTION = 0.3
# And so is black (under BLACK_LEVEL), whatever the median: a render's unlit
# side, and a photo's crushed to black. On a crescent the unlit side is most
# of the disk and the median is black itself, so the black side stayed in:
# its edge, the terminator against nothing, ruled the normalisation and
# ECC, and matches nothing in a photo lit by its own Sun. Phase sets (30
# pairs, every algorithm), registered (wrong): made-up maps seed 7001 122
# (23) -> 148 (2), seed 8102 130 (15) -> 137 (11); shared maps seed 7002
# 149 (1) -> 150 (0), seed 8101 140 (5) -> 146 (0).
BLACK_LEVEL = 1.0
RATIO = 0.85
# Matches must agree on the distance from the centre within this fraction
# of the radius (mild perspective and disk-fit error included).
RADIAL_TOLERANCE = 0.12
ANGLE_BIN_DEG = 10.0
ANGLE_TOLERANCE_DEG = 20.0
RANSAC_THRESHOLD = 0.012  # of the working radius
MIN_MATCHES = 6
MIN_INLIERS = 6
# A homography is only tried with this many similarity inliers.
HOMOGRAPHY_MIN_INLIERS = 15
# ... whose convex hull covers at least this fraction of the disk.
MIN_HULL_FRACTION = 0.3
ESTIMATOR = "auto"  # "similarity", "homography" or "auto" (see _estimate)
HOMOGRAPHY_METHOD = cv2.USAC_MAGSAC
REFINE = True
MAX_FEATURES = 1000
# Per algorithm: a working radius below WORK_RADIUS, and detector settings
# over MAX_FEATURES. The disks arrive at one scale, so ORB needs no deep
# pyramid: 3 levels and 400 features were as accurate as 8 and 1000 on the
# synthetic sets (seeds 0-2) and the real pairs, and the matching, which
# grows with the square of the count, is a sixth. Every detector's cost
# follows the canvas's pixels (SIFT doubles its input first). At radius 128
# every algorithm kept every success of its earlier radius (200; SIFT 160)
# on the photo-render (40), phone (20), synthetic (60) and demo sets, seeds
# 0 and 1 (benchmarks/bench_accuracy.py's sets), median errors within
# 0.01-0.14 points of the side's percent, at 40-80% of the pipeline's time.
# Rejected: SIFT on the halved canvas (its first octave at the canvas's
# resolution), a quarter of SIFT's time but median errors up by a quarter
# to a half; BRISK at 112 (errors up, no faster); AKAZE with 3 octaves or
# a higher threshold (no faster at 128).
ALGORITHM_SETTINGS = {
    "ORB": {
        "radius": 128,
        "detector": {"setMaxFeatures": 400, "setNLevels": 3},
        "retry_detector": {"setFastThreshold": 8, "setMaxFeatures": 800},
        "companion": "SIFT",
    },
    "BRISK": {"radius": 128, "retry_detector": {"setThreshold": 12}, "companion": "SIFT"},
    "SIFT": {"radius": 128, "retry_detector": {"setContrastThreshold": 0.02}, "companion": "BRISK"},
    "AKAZE": {"radius": 128, "retry_detector": {"setThreshold": 0.0003}, "companion": "SIFT"},
    "SURF": {
        "radius": 128,
        "max_keypoint_size": 0.55,
        "retry_detector": {"setHessianThreshold": 30},
        "companion": "SIFT",
    },
}
# SURF describes a keypoint by sampling a window 2.8 times its size on a
# side, pixel by pixel, before shrinking it to 20 x 20: the few keypoints
# larger than 0.55 of the radius (2-10 of ~400 on a canvas; their windows
# span most of the canvas, so they describe its border as much as the
# disk) took a tenth to a fifth of its time on the 276 px canvases.
# Without them every set kept every success and its median error (seeds 0
# and 1; README, "Speed against the original server").
# "retry_detector": settings for a second description of both disks when
# everything else failed, each detector's threshold lowered (ORB's cap
# raised). BRISK at a FAST threshold of 20 everywhere was as accurate but
# took 1.5-2x the time; as a retry it registered a blurred, over-exposed
# gibbous Moon (7 matches at 30). A crescent's sliver leaves every
# detector few keypoints. More keypoints make a chance consensus likelier,
# so an answer found only with them needs RETRY_MIN_INLIERS inliers.
# With ECC rigid on phases and probed, phase set (bench_accuracy --phase
# 40, seed 0), 10 -> 8 inliers: SIFT 35, ORB 29 -> 30, AKAZE 30 -> 32,
# BRISK 30 -> 32, SURF 35 -> 36 of 40, no answer wrong that was not
# before; second generator (bench_register_second, seeds 50000 and 60000)
# AKAZE one more of 40 in each; made-up maps seed 7300 and shared maps
# seed 9700 every answer the same. With no bar: 37, 34, 35, 34, 37, but a
# crescent 2.4% off there, and on the second generator a Moon cut by the
# frame 18% off and a whole one wrong. No Moon-less photo was answered
# (README, "Pipelines").
RETRY_MIN_INLIERS = 8
# "companion": the detector whose point matches may answer for the
# algorithm's when everything of its own (retries, the finer canvas, ECC)
# failed on the disk chosen first, from COMPANION_MIN_INLIERS inliers
# (per companion detector).
# A crescent's sliver, or a disk blown out but for its maria, leaves one
# detector too few keypoints where another's, on the same canvas, still
# match: SIFT's for ORB, AKAZE, BRISK and our SURF, BRISK's for SIFT.
# Point matches only: ECC, which no detector changes, had its turn with
# the algorithm's own. bench_accuracy seed 1206, made-up maps: phone ORB /
# AKAZE / BRISK / SURF 28 / 26 / 28 / 25 -> 31 each (SIFT's 31; the 9 left
# are blown out white), photo-render 38 / 39 / 40 / 38 -> 40 each; phase
# sets +1 to +4 an algorithm; no answer made wrong (README, "Pipelines").
# SURF as SIFT's companion answered a made-up crescent 3.9% off on 8.
# A disk OVEREXPOSED_SHARE blown out is asked at the working radius only:
# a small full Moon's few maria matched SIFT's keypoints where AKAZE's and
# SURF's were too few (phone set seed 9907 #5, shared maps), while the
# finer canvas's chain tripled a refused white disk's cost.
# SIFT's matches answer from 6 inliers, as SIFT's own do (MIN_INLIERS):
# phase sets (bench_accuracy --phase 40; shared maps seeds 1206 and 4404,
# made-up maps seeds 1206, 3 and 9), ORB / AKAZE / BRISK / SURF refused
# 15 crescents and half Moons at 8 that they answer within 2% at 6, and
# none is answered wrong. BRISK's for SIFT stay at 8: at 6 they answered
# a made-up half Moon 2.2% off (seed 3 #28) for two more within 2%.
COMPANION_MIN_INLIERS = {"SIFT": 6, "BRISK": 8}
# When everything at the working radius failed and the photo's disk is
# larger than the canvas by FINER_MIN_GAIN or more, both disks are
# described again on a finer canvas, the photo's own radius up to
# FINER_WORK_RADIUS, and matched once more there, plainly and with the
# detector's retry setting (see _register_disk). A crescent's sliver is a
# few pixels wide on a 128 px canvas: every detector finds too few
# keypoints on it, while the photo may hold two to three times the detail.
# Phase set (bench_accuracy --phase 40, seed 0): ORB 30 -> 34, AKAZE 32 ->
# 34, BRISK 32 -> 33 of 40; second generator (bench_register_second, seed
# 60000): BRISK 40 -> 41, SURF 41 -> 42 of 50; no answer wrong that was
# not before. More keypoints make a chance consensus likelier: generated
# crescents were answered 2.3-3.7% off on 6 inliers, so answers found only
# there need RETRY_MIN_INLIERS. Point matches only: ECC on the larger
# canvases registered nothing more and cost a refused phase-set request
# 512 ms of CPU instead of 441 (median; 285 before). Only after a
# failure, and only for the disk chosen first (not the other disks tried
# after it): a request that would be refused pays for it, one that
# succeeds does not.
FINER_WORK_RADIUS = 256
FINER_MIN_GAIN = 1.4
# Long side of the copy the disk is looked for in.
FIND_SIZE = 160
FIND_MIN_FRACTION = 0.15
# A circle found on the FIND_SIZE copy by the full search is checked for a
# limb at about this long side: at 160 px a lamp's or the Sun's glare steps
# as sharply as a limb.
CONFIRM_SIZE = 640
# An over-exposed photo: at least this share of its disk blown out (every
# channel at BLOWN_OUT_LEVEL or more, measured at BLOWN_OUT_RADIUS) is
# matched against a render flattened alike when plain matching fails.
BLOWN_OUT_MIN_SHARE = 0.1
BLOWN_OUT_LEVEL = 250
BLOWN_OUT_RADIUS = 48
# A photo whose disk is blown out over this share and still does not
# register is told so, rather than given the keypoint sentence: nothing of
# its surface is left to match (the whole phone photos refused on unseen
# seeds 4242, 5151 and 9090 were white all over, every channel at 255).
OVEREXPOSED_SHARE = 0.9
OVEREXPOSED = (
    "The Moon in the user-file is over-exposed: its disk is white nearly all over, "
    "with no surface left to match. Try a photo taken with less exposure."
)
# The render's shading for the unshaded reading (see _flatten_brightest), of
# the radius: wider than SHADING_SIGMA, which took the maria for shading
# (in this reading's first version, 0.08 lost two of four blown-out phone
# photos that 0.15-0.4 matched).
ALBEDO_SHADING_SIGMA = 0.25
# Against a render flattened where the photo blew out, ECC lines up the
# two flat plateaus' edges and the specks left round them: on the made-up
# maps' phone and photo-render sets (seeds 7300, 8100, 8200, 8500) 20 of
# its 35 answers there were 2.0-5.5% of the diameter off, at correlations
# of 0.40-0.44; the right ones read 0.36-0.44 or 0.60-0.62. There it must
# reach what ECC on the detail energy must.
FLATTENED_ECC_MIN = 0.5

# Disks tried besides the one taken for the Moon when that one does not
# register (or none stood out): see register_sides.
OTHER_DISKS = 3
OTHER_DISK_MIN_INLIERS = 10
# ...or by ECC lining it up with the render at this correlation: a Sun's
# textured glare reached 0.35; a blown-out Moon cut by the frame, passed
# over for a lamp's glare its size, 0.59 on 2 point matches.
OTHER_DISK_MIN_ECC = 0.5

# Plausibility, in the normalised frame where the answer is near a rotation.
SCALE_RANGE = (0.75, 1.33)
MAX_ANISOTROPY = 1.25
MAX_CENTRE_OFFSET = 0.15  # of the radius
MAX_PERSPECTIVE = 0.15  # relative scale change across the disk


def _grey(image):
    """The sum of the channels: a colour cast changes each channel's gain,
    which the contrast normalisation below undoes, while weighting the
    channels equally keeps a cast-starved channel (blue under an orange
    Moon) from amplifying its noise, as grey-world balancing would. Measured
    against luminance and grey-world: no worse on either set."""
    if image.ndim == 2:
        return image.astype(np.float32)
    # cv2.transform: a tenth of the time of NumPy's sum over the last axis.
    return cv2.transform(image.astype(np.float32), _CHANNEL_SUM[:, : image.shape[2]])


_CHANNEL_SUM = np.ones((1, 4), np.float32)


class _Pyramid:
    """An image and its halvings by INTER_AREA, made on demand.

    Halving is OpenCV's fast path for INTER_AREA (a 2000x2000 render in
    ~2 ms, where one shrink by an arbitrary factor takes ~8 ms), so both the
    disk search and the resampling start from the smallest level that still
    has the pixels they need. Level k's pixel centres are the original's
    ``(x + 0.5) / 2**k - 0.5``.
    """

    def __init__(self, image):
        self.levels = [image]

    def level(self, factor):
        """(image, k): the smallest level at least ``factor`` of the original's size."""
        k = 0
        while 2.0 ** -(k + 1) >= factor:
            image = self.levels[k]
            height, width = image.shape[:2]
            if min(height, width) < 32:
                break
            if len(self.levels) == k + 1:
                # Even sides keep resize on its exact 2x2 averaging path; the
                # dropped last row or column does not move the pixel grid.
                even = image[: height - height % 2, : width - width % 2]
                self.levels.append(cv2.resize(even, (width // 2, height // 2), interpolation=cv2.INTER_AREA))
            k += 1
        return self.levels[k], k

    @staticmethod
    def to_original(circle, k):
        """``circle`` found on level ``k``, in the original's pixels."""
        if k == 0:
            return circle
        step = 2.0**k
        return Circle((circle.x + 0.5) * step - 0.5, (circle.y + 0.5) * step - 0.5, circle.radius * step)

    @staticmethod
    def to_level(k):
        """3x3 mapping original pixels to level ``k``'s."""
        s = 2.0**-k
        return np.array([[s, 0.0, 0.5 * s - 0.5], [0.0, s, 0.5 * s - 0.5], [0.0, 0.0, 1.0]])


def _crop_transform(circle, radius):
    """Affine 3x3 mapping source pixels to the working canvas, and its size."""
    size = int(2 * round(radius * CANVAS_FACTOR))
    scale = radius / float(circle.radius)
    transform = np.array(
        [[scale, 0.0, size / 2.0 - scale * circle.x], [0.0, scale, size / 2.0 - scale * circle.y], [0.0, 0.0, 1.0]]
    )
    return transform, size


def _resample(pyramid, transform, size):
    """The canvas, warped from the smallest pyramid level still at least as
    fine as it: the halvings (exact 2x2 means) keep crater detail from
    aliasing, and the rest of the shrink, by less than 2, is bilinear.
    Measured against INTER_AREA on a crop of the full image: no less
    accurate, at a third of the cost."""
    image, k = pyramid.level(transform[0, 0])
    transform = transform @ np.linalg.inv(_Pyramid.to_level(k))
    return cv2.warpAffine(image, transform[:2], (size, size), flags=cv2.INTER_LINEAR, borderValue=0)


def _smooth(image, sigma):
    """A wide Gaussian blur computed at a quarter of the resolution: these
    blurs only carry shading, and full-size wide kernels dominated the cost."""
    height, width = image.shape[:2]
    small = cv2.resize(image, (width // 4, height // 4), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / 4.0)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _find_moon_fast(image):
    """find_moon on a copy no longer than FIND_SIZE: a disk's position and
    size need far fewer pixels than its craters do. ``image`` is an array or
    a :class:`_Pyramid` of one."""
    return _find_moon_fast_how(image)[0]


def _find_moon_fast_how(image):
    """(_find_moon_fast's circle, whether it was found on the FIND_SIZE copy
    rather than at the detector's own scale)."""
    pyramid = image if isinstance(image, _Pyramid) else _Pyramid(image)
    image = pyramid.levels[0]
    longer = max(image.shape[:2])
    if longer <= FIND_SIZE:
        return find_moon(image), False
    level, k = pyramid.level(FIND_SIZE / float(longer))
    factor = FIND_SIZE / float(max(level.shape[:2]))
    circle = None
    # A strip or a panorama would shrink to nothing along its short side.
    if min(level.shape[:2]) * factor >= 8:
        small = level
        if factor < 1.0:
            small = cv2.resize(level, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        factor_x, factor_y = small.shape[1] / level.shape[1], small.shape[0] / level.shape[0]
        try:
            circle, quick = find_moon_how(small)
        except NoMoonError:
            circle = None
    step = 2.0**k
    if circle is not None and circle.radius >= FIND_MIN_FRACTION * FIND_SIZE:
        circle = dataclasses.replace(
            circle,
            x=((circle.x + 0.5) / factor_x) * step - 0.5,
            y=((circle.y + 0.5) / factor_y) * step - 0.5,
            radius=circle.radius / np.sqrt(factor_x * factor_y) * step,
        )
        # The quick path's own profile test already tells a disk from a glow.
        if quick:
            return circle, True
        fine, j = pyramid.level(min(1.0, CONFIRM_SIZE / float(longer)))
        s = 2.0**-j
        if limb_is_sharp(fine, Circle((circle.x + 0.5) * s - 0.5, (circle.y + 0.5) * s - 0.5, circle.radius * s)):
            return circle, True
    # Uploads are cropped around the disk; a Moon small in its frame (a
    # whole phone photo), or a glare, is looked at again at the detector's
    # own scale.
    return _find_moon_searched(pyramid), False


def _find_moon_searched(pyramid):
    """find_moon on the pyramid level it works at (see _search_level), in
    the photo's pixels."""
    level, k = _search_level(pyramid)
    return _Pyramid.to_original(find_moon(level), k)


def _search_level(pyramid):
    """(level, k): the pyramid level just above find_moon's MAX_WORK_PIXELS
    (the original when it is no larger): the halvings are shared with the
    resampling, and shrinking a 12 Mpx photo in one step costs more."""
    image = pyramid.levels[0]
    pixels = float(image.shape[0] * image.shape[1])
    return pyramid.level(min(1.0, (MAX_WORK_PIXELS / pixels) ** 0.5))


# The render's own disk: renders are drawn on a black sky, so the limb is
# the lit region's outline wherever that is a circle (the terminator is an
# ellipse and is voted out). Worked at about this long side.
RENDER_FIT_SIZE = 450
RENDER_SKY_LEVEL = 3  # grey levels: a render's sky is black
RENDER_SKY_SHARE = 0.9  # of the frame's border pixels at most that dark
RENDER_MIN_ARC = 0.35  # of the circumference on the fitted circle
RENDER_TRIALS = 200
RENDER_POINTS = 400


def _render_disk(pyramid):
    """The model's disk fitted to its lit limb when the model is a render on
    a black sky; else None.

    Measured on renders with a phase of up to 40 degrees: find_moon's
    general-purpose search took the terminator for the limb on a third of
    them (radius off by up to 40%), which no matching survives."""
    image = pyramid.levels[0]
    longer = max(image.shape[:2])
    level, k = pyramid.level(min(1.0, RENDER_FIT_SIZE / float(longer)))
    grey = cv2.cvtColor(level, cv2.COLOR_BGR2GRAY) if level.ndim == 3 else level
    height, width = grey.shape
    if min(height, width) < 16:
        return None
    band = max(1, min(height, width) // 50)
    border = np.concatenate([grey[:band].ravel(), grey[-band:].ravel(), grey[:, :band].ravel(), grey[:, -band:].ravel()])
    if np.mean(border <= RENDER_SKY_LEVEL) < RENDER_SKY_SHARE:
        return None
    lit = (grey > 2 * RENDER_SKY_LEVEL).astype(np.uint8)
    contours, _ = cv2.findContours(lit, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    points = max(contours, key=len).reshape(-1, 2).astype(np.float64)
    # The frame's edge is no limb.
    points = points[(points[:, 0] > 0) & (points[:, 1] > 0) & (points[:, 0] < width - 1) & (points[:, 1] < height - 1)]
    if len(points) < 20:
        return None
    # RANSAC on at most RENDER_POINTS of them (its cost), counted on all.
    fit = _ransac_circle(points[:: max(1, len(points) // RENDER_POINTS)], tolerance=1.5)
    if fit is None:
        return None
    x, y, r, _ = fit
    count = int((np.abs(np.hypot(points[:, 0] - x, points[:, 1] - y) - r) <= 1.5).sum())
    if count < RENDER_MIN_ARC * 2 * np.pi * r or r < 8 or r > max(height, width):
        return None
    return _Pyramid.to_original(Circle(x, y, r), k)


def _ransac_circle(points, tolerance):
    """(x, y, r, inlier count) of the circle most ``points`` lie on, refined
    by least squares on its inliers; None when no circle is found. Seeded:
    the answer is deterministic."""
    rng = np.random.default_rng(7)
    trials = rng.integers(0, len(points), size=(RENDER_TRIALS, 3))
    a, b, c = points[trials[:, 0]], points[trials[:, 1]], points[trials[:, 2]]
    d = 2.0 * (a[:, 0] * (b[:, 1] - c[:, 1]) + b[:, 0] * (c[:, 1] - a[:, 1]) + c[:, 0] * (a[:, 1] - b[:, 1]))
    ok = np.abs(d) > 1e-6
    a, b, c, d = a[ok], b[ok], c[ok], d[ok]
    if not len(d):
        return None
    a2, b2, c2 = (a * a).sum(1), (b * b).sum(1), (c * c).sum(1)
    ux = (a2 * (b[:, 1] - c[:, 1]) + b2 * (c[:, 1] - a[:, 1]) + c2 * (a[:, 1] - b[:, 1])) / d
    uy = (a2 * (c[:, 0] - b[:, 0]) + b2 * (a[:, 0] - c[:, 0]) + c2 * (b[:, 0] - a[:, 0])) / d
    r = np.hypot(a[:, 0] - ux, a[:, 1] - uy)
    # In chunks: trials x points distances stay small in memory.
    counts = np.concatenate(
        [
            (np.abs(np.hypot(points[None, :, 0] - ux[i : i + 50, None], points[None, :, 1] - uy[i : i + 50, None]) - r[i : i + 50, None]) <= tolerance).sum(1)
            for i in range(0, len(r), 50)
        ]
    )
    best = int(np.argmax(counts))
    x, y, radius = ux[best], uy[best], r[best]
    for _ in range(3):
        inliers = points[np.abs(np.hypot(points[:, 0] - x, points[:, 1] - y) - radius) <= tolerance]
        if len(inliers) < 10:
            return None
        # Algebraic (Kasa) least squares: x^2 + y^2 = 2ax + 2by + c.
        design = np.column_stack([2 * inliers, np.ones(len(inliers))])
        solution, *_ = np.linalg.lstsq(design, (inliers**2).sum(1), rcond=None)
        x, y = solution[0], solution[1]
        radius = float(np.sqrt(max(solution[2] + x * x + y * y, 0.0)))
    count = int((np.abs(np.hypot(points[:, 0] - x, points[:, 1] - y) - radius) <= tolerance).sum())
    return float(x), float(y), radius, count


# A photo's disk refined to its lit limb: the search fits its circle at
# 160 px or 1 Mpx to a thresholded outline, which on a gibbous Moon runs
# along the terminator too (a convex ellipse there, as bright-edged as the
# limb once over-exposed), and a radius or centre a few per cent off is
# more than the matching's consistency checks allow. Radial profiles at
# about LIMB_FIT_RADIUS px; the steepest fall on each, where strong, is a
# limb point; the circle through the most of them replaces the search's
# when it is within LIMB_MAX_SHIFT of it and its points are a limb: at
# least LIMB_MIN_ARC of the directions inside the frame (the lit limb is
# half the circle at any phase, less when the frame cuts it), and spread
# over LIMB_MIN_SPAN degrees or more (LIMB_CUT_SPAN where the frame cuts
# the profiles).
LIMB_FIT_RADIUS = 160
LIMB_ANGLES = 180
LIMB_REACH = (0.75, 1.25)  # of the radius, where the fall is looked for
LIMB_STEP = 0.5  # px along a profile
LIMB_STRONG = 0.5  # of the upper quartile of the falls, at least
LIMB_SHARP = 2.5  # px either side of the steepest point
LIMB_SHARP_SHARE = 0.5  # of the profile's whole fall, within LIMB_SHARP of it
LIMB_TOLERANCE = 0.01  # of the radius (1 px at least)
LIMB_MIN_ARC = 0.25
LIMB_MIN_POINTS = 20
LIMB_MIN_SPAN = 90.0
# Where the frame cuts the profiles, a crescent's lit limb may show less
# than LIMB_MIN_SPAN of itself (the second generator's 96116: 66 degrees of
# a phase-114 Moon more than half outside the frame). Without its limb the
# disk kept the search's circle, 5% small there, and with it no bound on
# the scale of an answer on weak evidence: ORB, AKAZE and BRISK answered
# by ECC 5.3% of the diameter off, SURF 3.9%. Such an arc settles the
# circle when it spans LIMB_CUT_SPAN degrees and nearly every strong fall
# is on it (LIMB_CUT_SHARE): on the 113 Moons cut by the frame of seeds
# 97000-98099 the 13 circles so taken came within 0.1-1.8% of the truth's
# radius and centre (from up to 10%); the one other arc under 90 degrees,
# 27 of its 40 falls on it, was 12% off and is refused.
LIMB_CUT_SPAN = 50.0
LIMB_CUT_SHARE = 0.85
LIMB_MAX_SHIFT = 0.3  # of the radius, centre and radius each
# With both disks on their limbs, the canvases' disks have one size to about
# a per cent, so an answer on weak evidence (ECC, or fewer than
# HOMOGRAPHY_MIN_INLIERS inliers) that scales the disk by more than this is
# a wrong one. Measured on seven phone sets: right answers of that kind
# 0.986-1.047; wrong ones up to 1.133 (6.4% of the diameter off). There is
# no clean line between: 1.052 (2.7% off) is refused, and a photo-render
# answer at 1.048 (2.6% off) gets through.
LIMB_MAX_SCALE = 0.05
# ECC's answers are held closer: on seven photo-against-render, phase and
# phone sets (both lunar maps and the made-up ones) its 115 right answers
# there scaled the disk by 0.976-1.030, two wrong ones by 1.041 (3.1% of
# the diameter off, on the detail energy) and 1.045 (2.0%). Refused, the
# matching tried after it answered 5 of those 9 requests right, one 2.2%
# off.
ECC_MAX_SCALE = 0.035
# Read on the sphere (_on_sphere), an ECC answer turns the globe; the part
# of that turn out of the image plane is the libration between the photo
# and the render, which the client makes for the photo's moment: a few
# degrees. On the phone, photo-against-render and phase sets of four
# seeds (both lunar maps and the made-up ones, every algorithm), the 1,610
# right ECC answers with both circles on their limbs tilted the globe by
# 4.85 degrees at most (99% under 4.5); the wrong ones (29 requests, half
# Moons and crescents) by 0.8-9.7, seven beyond ECC_MAX_TILT_DEG (2.6-7.2%
# of the side off). Refused, the matching or ECC tried after answered 20 of
# those registrations right and refused 5 (README, "Pipelines").
ECC_MAX_TILT_DEG = 5.5
# Where a circle is not on its limb no tilt can be read, but the canvases'
# disks still have one size to a few per cent (the search's circles):
# ECC's 25 right answers there scaled the disk by 0.974-0.993, its wrong
# ones by 1.054 (5.1% of the side off) and 1.10 (6.9% of the diameter);
# refused, AKAZE's matches answered both right, SIFT and BRISK refused one.
# Held to ECC_MAX_SCALE's 0.035 since ECC reads the photo's own mask (the
# first of those wrong answers came back at 1.046, 4.8% off).
ECC_FREE_MAX_SCALE = 0.035


def _refine_limb(pyramid, circle):
    """``circle`` (the search's, in the photo's pixels) fitted to the
    photo's lit limb; None when the limb does not settle it."""
    level, k = pyramid.level(min(1.0, LIMB_FIT_RADIUS / float(circle.radius)))
    s = 2.0**-k
    cx, cy, r = (circle.x + 0.5) * s - 0.5, (circle.y + 0.5) * s - 0.5, circle.radius * s
    # Only the disk's surroundings (the reach, and the blur's margin).
    reach = LIMB_REACH[1] * r + 4
    x0, y0 = max(0, int(cx - reach)), max(0, int(cy - reach))
    x1, y1 = min(level.shape[1], int(np.ceil(cx + reach)) + 1), min(level.shape[0], int(np.ceil(cy + reach)) + 1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    grey = cv2.GaussianBlur(_brightness(level[y0:y1, x0:x1]).astype(np.float32), (0, 0), 1.0)
    cx, cy = cx - x0, cy - y0
    height, width = grey.shape
    theta = np.arange(LIMB_ANGLES) * (2 * np.pi / LIMB_ANGLES)
    t = np.arange(LIMB_REACH[0] * r, LIMB_REACH[1] * r, LIMB_STEP)
    if len(t) < 8:
        return None
    xs = (cx + t[None, :] * np.cos(theta)[:, None]).astype(np.float32)
    ys = (cy + t[None, :] * np.sin(theta)[:, None]).astype(np.float32)
    inside = (xs >= 0) & (ys >= 0) & (xs <= width - 1) & (ys <= height - 1)
    profiles = cv2.remap(grey, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fall = profiles[:, :-1] - profiles[:, 1:]
    j = np.argmax(fall, axis=1)
    rows = np.arange(LIMB_ANGLES)
    drop = fall[rows, j]
    # Sub-sample: the vertex of the parabola through the fall's peak.
    left = fall[rows, np.maximum(j - 1, 0)]
    right = fall[rows, np.minimum(j + 1, fall.shape[1] - 1)]
    curve = left - 2 * drop + right
    offset = np.where(curve < 0, 0.5 * (left - right) / np.where(curve < 0, curve, -1.0), 0.0)
    radial = t[j] + (np.clip(offset, -0.5, 0.5) + 0.5) * LIMB_STEP
    # Directions whose profile leaves the frame show no limb of their own.
    framed = inside.all(axis=1)
    if framed.sum() < 0.25 * LIMB_ANGLES:
        return None
    # A limb is a step: its fall peaks inside the reach, and most of the
    # profile's whole fall happens within LIMB_SHARP px of the peak (not so a
    # glow's or a soft terminator's).
    n = fall.shape[1]
    half = int(round(LIMB_SHARP / LIMB_STEP))
    near = profiles[rows, np.maximum(j - half, 0)] - profiles[rows, np.minimum(j + 1 + half, n)]
    before = np.maximum.accumulate(profiles, axis=1)[rows, j]
    after = np.minimum.accumulate(profiles[:, ::-1], axis=1)[:, ::-1][rows, np.minimum(j + 1, n)]
    sharp = near >= LIMB_SHARP_SHARE * np.maximum(before - after, 1e-6)
    peaked = (j > 0) & (j < n - 1)
    strong = framed & peaked & sharp & (drop > 0) & (drop >= LIMB_STRONG * np.percentile(drop[framed], 75))
    points = np.column_stack([cx + radial * np.cos(theta), cy + radial * np.sin(theta)])[strong]
    tolerance = max(1.0, LIMB_TOLERANCE * r)
    if len(points) < 10:
        return None
    fit = _ransac_circle(points.astype(np.float64), tolerance)
    if fit is None:
        return None
    x, y, radius, count = fit
    on = np.abs(np.hypot(points[:, 0] - x, points[:, 1] - y) - radius) <= tolerance
    angles = np.sort(np.degrees(np.arctan2(points[on, 1] - y, points[on, 0] - x)))
    gaps = np.diff(np.concatenate([angles, angles[:1] + 360.0])) if len(angles) else np.array([360.0])
    span = 360.0 - gaps.max()
    cut_arc = framed.sum() < LIMB_ANGLES and span >= LIMB_CUT_SPAN and count >= LIMB_CUT_SHARE * len(points)
    if (
        count < max(LIMB_MIN_POINTS, LIMB_MIN_ARC * framed.sum())
        or (span < LIMB_MIN_SPAN and not cut_arc)
        or _shifted_beyond(Circle(x, y, radius), Circle(cx, cy, r))
    ):
        return None
    return _Pyramid.to_original(Circle(x + x0, y + y0, radius), k)


def _shifted_beyond(circle, start):
    """Whether ``circle``'s centre or radius lies more than LIMB_MAX_SHIFT of
    ``start``'s radius from ``start``'s: then it is no longer the same disk."""
    return (
        np.hypot(circle.x - start.x, circle.y - start.y) > LIMB_MAX_SHIFT * start.radius
        or abs(circle.radius - start.radius) > LIMB_MAX_SHIFT * start.radius
    )


def normalise_disk(image, circle, radius=WORK_RADIUS, clip_share=0.0, unshaded=False):
    """Resample ``circle``'s disk of a BGR ``image`` (or a :class:`_Pyramid`
    of one) to ``radius`` and normalise it photometrically; with
    ``clip_share``, first flatten that brightest share of the disk as an
    over-exposed photo's is (see _flatten_brightest).

    Returns (8-bit grey canvas, detection mask, 3x3 source-to-canvas transform).
    """
    transform, size = _crop_transform(circle, radius)
    canvas = _resample(image if isinstance(image, _Pyramid) else _Pyramid(image), transform, size)
    disk, mask, norm = _canvas_masks(size, radius)
    grey = _grey(canvas)
    if clip_share > 0:
        grey = _flatten_brightest(grey, disk, radius, clip_share, unshaded)
    # Occluders (branches, a plane, the unlit side) are much darker than any
    # lit lunar terrain: fill them with the disk's level and keep detection
    # away from their edges, which are strong but match nothing.
    level = _median_level(grey[disk > 0])
    dark = ((grey < max(OCCLUDER_FRACTION * level, BLACK_LEVEL)) & (disk > 0)).astype(np.uint8)
    if dark.any():
        grow = max(1, int(round(0.015 * radius)))
        dark = cv2.dilate(dark, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
        grey = np.where(dark > 0, np.float32(level), grey)
        disk = np.where(dark > 0, 0, disk).astype(np.uint8)
        norm = None
    weight = disk.astype(np.float32) / 255.0
    sigma = max(2.0, SHADING_SIGMA * radius)
    if norm is None:
        norm = _smooth(weight, sigma) + 1e-6
    low = _disk_mean(grey, weight, sigma, norm)
    detail = (grey - low) * weight
    spread = np.sqrt(_smooth(detail * detail, 2 * sigma) / norm) + 1e-3
    detail = detail / spread
    if DETAIL_SIGMA > 0:
        detail = cv2.GaussianBlur(detail, (0, 0), DETAIL_SIGMA)
    out = np.clip(128.0 + 40.0 * detail, 0, 255).astype(np.uint8)
    return out, mask & disk, transform


def _disk_mean(values, weight, sigma, norm=None):
    """Local means of ``values`` over the disk only (``weight``, 0 to 1), a
    normalised convolution: the black sky does not bleed a bright ring into
    the limb. ``norm`` is ``_smooth(weight, sigma) + 1e-6`` when known."""
    if norm is None:
        norm = _smooth(weight, sigma) + 1e-6
    return _smooth(values * weight, sigma) / norm


def _flatten_brightest(grey, disk, radius, share, unshaded=False):
    """A render's ``grey`` disk with the brightest ``share`` of its lit part
    flattened, as an over-exposed photo's disk is blown out.

    The photo blows out where albedo times its own shading is high. When its
    phase is the render's, the render's raw levels say where; a near-full
    photo against a render with a phase has no terminator, and there the
    render's darkest raw pixels are its terminator's, not the maria that
    survive in the photo (flattening 94% left nothing at all). ``unshaded``
    divides the render's shading (the disk's wide local mean) out first and
    takes the share of its lit part only (the unlit side stays black and is
    masked as an occluder later)."""
    inside = disk > 0
    if unshaded:
        level = np.float32(max(_median_level(grey[inside]), 1.0))
        shading = _disk_mean(grey, disk.astype(np.float32) / 255.0, max(2.0, ALBEDO_SHADING_SIGMA * radius))
        # Kept in grey levels: the occluder test after this reads them.
        grey = grey * (level / np.maximum(shading, 1.0))
        level = np.float32(max(_median_level(grey[inside]), 1.0))
        lit = inside & (grey >= OCCLUDER_FRACTION * level)
    else:
        lit = inside
    if not lit.any():
        return grey
    return np.minimum(grey, np.float32(np.quantile(grey[lit], 1.0 - share)))


@functools.lru_cache(maxsize=16)
def _canvas_masks(size, radius):
    """The disk, the detection circle and the disk's normalising blur for a
    canvas: the same for every image without occluders. Read-only."""
    centre = (size // 2, size // 2)
    disk = cv2.circle(np.zeros((size, size), np.uint8), centre, int(radius * 0.98), 255, -1)
    mask = cv2.circle(np.zeros((size, size), np.uint8), centre, int(radius * MASK_FRACTION), 255, -1)
    norm = _smooth(disk.astype(np.float32) / 255.0, max(2.0, SHADING_SIGMA * radius)) + 1e-6
    for array in (disk, mask, norm):
        array.flags.writeable = False
    return disk, mask, norm


def _median_level(values):
    """np.median of whole-number grey levels, from their histogram (a
    quarter of the time of a partition over the disk's pixels)."""
    if not len(values):
        return 0.0
    counts = np.bincount(values.astype(np.intp)).cumsum()
    n = int(counts[-1])
    low, high = np.searchsorted(counts, [(n - 1) // 2, n // 2], side="right")
    return (float(low) + float(high)) / 2.0


class _Detectors:
    """Idle detectors per algorithm, one lent to each description.

    BRISK builds its sampling pattern in its constructor (~40 ms, as long as
    the rest of a registration, and ~47 MB), so detectors are kept between
    requests. Kept per thread, every request thread of a server (8 by
    default) and every decoding thread would come to hold one of each
    algorithm it ever ran, companions included, though no more than
    ``max_concurrent_registrations`` registrations (two sides each)
    describe at once. Lent out and given back, there are only as many as
    were ever in use at the same time, and none is used by two threads at
    once (its settings change for a retry)."""

    def __init__(self):
        self._idle = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(algorithm):
        return (algorithm.name, algorithm.implementation, algorithm.create)

    @contextlib.contextmanager
    def lend(self, algorithm):
        key = self._key(algorithm)
        with self._lock:
            idle = self._idle.setdefault(key, [])
            detector = idle.pop() if idle else None
        if detector is None:
            detector = _new_detector(algorithm)
        try:
            yield detector
        finally:
            with self._lock:
                self._idle[key].append(detector)

    def idle(self, algorithm):
        """The idle detectors of ``algorithm`` (a copy of the list)."""
        with self._lock:
            return list(self._idle.get(self._key(algorithm), ()))


_DETECTORS = _Detectors()


@functools.lru_cache(maxsize=None)
def _norm(algorithm):
    """The descriptor distance of ``algorithm``'s detector (as set up by
    _new_detector: ORB's depends on its WTA_K)."""
    with _DETECTORS.lend(algorithm) as detector:
        return detector.defaultNorm()


def _new_detector(algorithm):
    detector = algorithm.create()
    # One cap for every detector that takes one: ORB's default 500 is too few
    # once most matches are rejected, and uncapped SIFT/AKAZE make the
    # brute-force matching the slowest step.
    for setter in ("setMaxFeatures", "setNFeatures", "setMaxPoints"):
        if hasattr(detector, setter):
            getattr(detector, setter)(MAX_FEATURES)
    for setter, value in ALGORITHM_SETTINGS.get(algorithm.name, {}).get("detector", {}).items():
        getattr(detector, setter)(value)
    return detector


def _mutual_ratio_matches(desc_a, desc_b, norm):
    """Pairs (index in a, index in b) that pass the ratio test and are each
    other's nearest neighbours."""
    if desc_a is None or desc_b is None or len(desc_a) < 2 or len(desc_b) < 2:
        return np.empty((0, 2), int)
    if norm == cv2.NORM_HAMMING and desc_a.dtype == np.uint8:
        return _mutual_hamming(desc_a, desc_b)
    # The backward search only runs for the b descriptors that some
    # ratio-passing match points at: the same answer as a full backward
    # pass at a fraction of its cost.
    matcher = cv2.BFMatcher(norm)
    forward = [pair for pair in matcher.knnMatch(desc_a, desc_b, k=2) if len(pair) == 2]
    if not forward:
        return np.empty((0, 2), int)
    table = np.array([(p.queryIdx, p.trainIdx, p.distance, q.distance) for p, q in forward])
    table = table[table[:, 2] < RATIO * table[:, 3]]
    pairs = table[:, :2].astype(int)
    if not len(pairs):
        return np.empty((0, 2), int)
    targets = np.unique(pairs[:, 1])
    back = matcher.match(desc_b[targets], desc_a)
    best_back = np.full(len(desc_b), -1)
    best_back[targets[[m.queryIdx for m in back]]] = [m.trainIdx for m in back]
    return pairs[best_back[pairs[:, 1]] == pairs[:, 0]].reshape(-1, 2)


def _mutual_hamming(desc_a, desc_b):
    """_mutual_ratio_matches for binary descriptors from one table of all
    Hamming distances (NumPy's popcount over 64-bit words), which serves
    both directions: half the time of BFMatcher's two searches here, and
    the same pairs (a tie for the nearest fails the ratio test anyway, and
    the backward search takes the first of equals, as BFMatcher does)."""
    words = -(-desc_a.shape[1] // 8)
    a, b = (np.zeros((len(d), 8 * words), np.uint8) for d in (desc_a, desc_b))
    a[:, : desc_a.shape[1]], b[:, : desc_b.shape[1]] = desc_a, desc_b
    a, b = a.view(np.uint64), b.view(np.uint64)
    table = np.zeros((len(a), len(b)), np.uint16)
    for k in range(words):
        table += np.bitwise_count(a[:, None, k] ^ b[None, :, k])
    nearest = table.argmin(axis=1)
    two = np.partition(table, 1, axis=1)
    rows = np.arange(len(a))
    keep = (two[:, 0] < RATIO * two[:, 1].astype(np.float32)) & (table.argmin(axis=0)[nearest] == rows)
    return np.column_stack((rows[keep], nearest[keep]))


def _turn_between(a, b):
    """The signed turn from ``b`` to ``a`` in degrees, in [-180, 180)
    (arrays too)."""
    return (a - b + 180.0) % 360.0 - 180.0


def _consistent(src, dst, centre, radius):
    """Mask of the matches whose radii agree and whose rotation about the
    centre is the dominant one."""
    du, dm = src - centre, dst - centre
    ru, rm = np.hypot(*du.T), np.hypot(*dm.T)
    radial = np.abs(ru - rm) < RADIAL_TOLERANCE * radius
    # Near the centre the angle is undefined; those matches do not vote but
    # are kept for the estimator to judge.
    voting = radial & (ru > 0.15 * radius) & (rm > 0.15 * radius)
    if voting.sum() < 2:
        return radial
    angles = np.degrees(np.arctan2(dm[:, 1], dm[:, 0]) - np.arctan2(du[:, 1], du[:, 0])) % 360.0
    bins = int(round(360.0 / ANGLE_BIN_DEG))
    histogram = np.bincount((angles[voting] / ANGLE_BIN_DEG).astype(int) % bins, minlength=bins).astype(float)
    smoothed = histogram + 0.5 * (np.roll(histogram, 1) + np.roll(histogram, -1))
    peak = int(np.argmax(smoothed))
    members = voting & (np.abs(_turn_between(angles, (peak + 0.5) * ANGLE_BIN_DEG)) < ANGLE_BIN_DEG * 1.5)
    rotation = float(np.degrees(np.angle(np.mean(np.exp(1j * np.radians(angles[members])))))) % 360.0
    off = np.abs(_turn_between(angles, rotation))
    keep = radial & ((off < ANGLE_TOLERANCE_DEG) | ~voting)
    return keep


# The fallback when matching alone fails (a photo far from the render: an
# over-exposed albedo photo against a shaded mosaic): the rotation from
# correlating the two normalised disks in polar coordinates, then matching
# each photo keypoint only among the model keypoints near where that
# rotation puts it.
POLAR_INNER, POLAR_OUTER = 0.15, 0.9  # of the radius: the rings correlated
POLAR_MIN_PEAK = 3.5  # the correlation peak, in standard deviations
GUIDE_RADIUS = 0.12  # of the radius: how far from the prediction a match may lie
GUIDED_RATIO = 0.9
GUIDED_MIN_INLIERS = 10
# The answer's rotation against the polar one. Right guided answers on the
# phone (3 x 40) and photo-render (2 x 40) sets agreed within 3.5 degrees
# (one 5.0); the one wrong answer they returned (ORB, 10 inliers at the
# minimum, scale 1.08) turned 6.6 degrees away. A gated search finds some
# consensus near any rotation it is given, so a wide gate lets it drift.
GUIDED_MAX_TURN_DEG = 6.0
# A plain answer on fewer inliers than this is weak evidence (6-9 inliers
# of ~20 matches; some 2-2.9% off on the made-up maps' over-exposed pairs):
# the guided matching is asked as well, and its answer taken when it has
# more inliers and the two disks agree better under it (_agreement, on the
# disks blurred by AGREEMENT_SIGMA px). Inliers alone chose the guided
# answer as often when it was worse (a gated search collects inliers
# anywhere within its gate): on the made-up maps' seed 5200, 20 of 27
# changed answers worse, one 0.59 -> 1.53%; with the agreement at 1.5 px
# 11 of 15 worse, that one kept; at 3 px 9 of 14, none by more than 0.2
# points, and none over 2% that was within it (README, "Pipelines").
# Asked below 15 inliers rather than 10: a similarity on 14 inliers of an
# ORB phone photo was turned 6 degrees (5.4% of the diameter off; guided
# 1.8%), and over 7,200 registrations of bench_accuracy's sets the 178
# answers that changed went from 0.48% to 0.41% off on average, none
# across 2% but that one.
SECOND_OPINION_INLIERS = 15
AGREEMENT_SIGMA = 3.0
# The last resort (_last_resort): ECC from a polar peak under
# POLAR_MIN_PEAK but at least WEAK_PEAK, held to a higher correlation.
WEAK_PEAK = 3.0
WEAK_PEAK_MIN_CORRELATION = 0.4
WEAK_PEAK_MAX_BLOWN = 0.5
# ECC starts at the polar rotation and converges on the disks' own detail.
ECC_MAX_TURN_DEG = 10.0
# Last resort: ECC on the disks from the polar rotation, coarse to fine:
# first on disks blurred by 3 px, where the photo's and the render's
# detail differ least and the basin is wide, then by 1.5 px from there.
# At 1.5 px alone (phone and photo-render sets of seeds 7, 211 and 4242,
# the 48 answers ECC gave): median 0.97% of the diameter, 4 over 2%
# (2.4-2.6%); coarse to fine: 0.91%, none over 1.83% (two of those four
# then found by matching, 0.65-0.79%, two refused).
ECC_SIGMAS = (3.0, 1.5)
ECC_ITERATIONS = 60
ECC_MIN_CORRELATION = 0.3
# On a half Moon or crescent whose circles were both fitted to their limbs
# (to about a per cent), the disks are already the same size on their
# canvases: ECC turns and shifts them only (cv2.MOTION_EUCLIDEAN; see
# _rigid_ecc), instead of the affine's six freedoms, with which ECC slid
# along the lit limb (2.2-5.5% of the diameter off, at correlations of
# 0.5-0.76 as the right answers had).
ECC_RIGID = True
# An ECC answer must be found again from starts turned ECC_PROBE_DEG away
# either side, or from the lit side's rotation when ECC started from the
# polar correlation's point near it: on a flat correlation ECC stops
# wherever it starts (a crescent 13 degrees off at a correlation of 0.58
# from that point, 5 degrees off from the lit side's rotation). The
# answers within ECC_PROBE_AGREE of the radius of each other over the rim;
# where the probe ran on the phase set and the second generator they
# agreed within 0.0006 or differed by 0.045. Probed on one side only, a
# crescent whose polar rotation was 13 degrees off was lined up 12 degrees
# off (5.8% of the side): from 5 degrees further it came back there, from
# 5 degrees nearer the truth it did not. The basin is settled on the
# coarse blur: the probes stop there (ECC_PROBE_SIGMAS) and are compared
# with the answer's own coarse stage (against probes run to the fine blur,
# no answer of 2,100 changed).
ECC_PROBE_DEG = 5.0
ECC_PROBE_SIDES = (1.0, -1.0)
ECC_PROBE_SIGMAS = ECC_SIGMAS[:1]
ECC_PROBE_AGREE = 0.02
# Last of all, the same on the disks' detail energy (|detail above a blur
# of DETAIL_SIGMAS[0] px|, blurred by DETAIL_SIGMAS[1] px), where a crater
# is a ring of energy whether the image shows it as a shaded bowl (a
# low-sun mosaic) or as a bright rim with rays (a full-Moon photo): their
# places agree where their looks do not. See _ecc_on_detail.
DETAIL_SIGMAS = (3.0, 2.0)
DETAIL_MIN_CORRELATION = 0.5
# The lit side's guide, for a crescent or a half Moon whose two disks
# agree in too little detail for the polar rotation to stand out: each
# disk's brightness centroid lies off its centre towards the Sun, and the
# rotation between the two centroids' directions is the rotation between
# the disks (measured on crescent pairs, phases 90-140: within 0-13 degrees
# of the truth, where the polar peak was lost). It is sharpened by the
# polar correlation's highest point within LIT_WINDOW_DEG of it, then
# guides the matching and ECC as the polar rotation does. Asked only when
# both centroids are LIT_MIN of the radius off centre or more (a half
# Moon's lit half, evenly bright, 0.42; a full Moon's maria move it by a
# few hundredths) and within LIT_AGREE of each other's length: a render
# at another phase than the photo gives no guide.
LIT_RADIUS = 48
LIT_MIN = 0.3
LIT_AGREE = 0.7
LIT_WINDOW_DEG = 20.0
LIT_MIN_INLIERS = 6
# Those matches on fewer than LIT_SECOND_OPINION_INLIERS inliers are weak
# evidence: along a crescent's sliver, 6-9 of them were 2.1-6.4% of the
# side off where ECC from the same turn lined the disks up within 1.5%. ECC
# is asked then, and its answer, when it stands, is taken (README,
# "Pipelines").
LIT_SECOND_OPINION_INLIERS = 15
# ... and when ECC does not stand, those matches alone answer only from
# LIT_ALONE_MIN_INLIERS inliers: matching gated round the guide's turn
# keeps the similarity's scale near 1 whatever the disks, and on a circle
# detection found at half a half Moon's size 6-8 such matches agreed on
# answers 48-64% off (second generator 68004 with SIFT through its
# companion, AKAZE and BRISK, 69018 with SURF). Below it, the fallbacks
# (ECC from the polar turn, the lit side's, the detail energy) decide.
# Phase sets (seed 0 both maps, 1206, 5353, 9811): one answer 3.4% off
# right, one refusal registered, nothing else changed.
LIT_ALONE_MIN_INLIERS = 9


def _polar_rotation(user_work, user_mask, model_work, model_mask, radius, near=None):
    """(rotation in degrees about the canvas centre, peak height in standard
    deviations) that best lines the model's normalised disk up with the
    photo's: a circular cross-correlation of the polar images over the angle,
    each ring normalised, summed over the rings. Measured on 40
    photo-against-render pairs: within 3 degrees of the truth on all, peaks
    4.2-6.1 standard deviations, where noise disks stay below 3. ``near``:
    the highest point within LIT_WINDOW_DEG of that rotation instead."""
    size = user_work.shape[0]
    centre = (size / 2.0, size / 2.0)
    rings = []
    for work, mask in ((user_work, user_mask), (model_work, model_mask)):
        detail = (work.astype(np.float32) - 128.0) * (mask > 0)
        polar = cv2.warpPolar(detail, (radius, 360), centre, radius, cv2.WARP_POLAR_LINEAR)
        polar = polar[:, int(POLAR_INNER * radius) : int(POLAR_OUTER * radius)]
        rings.append((polar - polar.mean(axis=0)) / (polar.std(axis=0) + 1e-6))
    spectrum = np.fft.fft(rings[1], axis=0) * np.conj(np.fft.fft(rings[0], axis=0))
    correlation = np.fft.ifft(spectrum, axis=0).real.sum(axis=1)
    if near is None:
        peak = int(np.argmax(correlation))
    else:
        window = _turn_between(np.arange(360), near)
        peak = int(np.argmax(np.where(np.abs(window) <= LIT_WINDOW_DEG, correlation, -np.inf)))
    height = float((correlation[peak] - np.median(correlation)) / (correlation.std() + 1e-9))
    # Sub-degree peak by a parabola through its neighbours.
    left, mid, right = correlation[peak - 1], correlation[peak], correlation[(peak + 1) % 360]
    denominator = left - 2 * mid + right
    offset = 0.5 * (left - right) / denominator if abs(denominator) > 1e-12 else 0.0
    return (peak + offset) % 360.0, height


def _canvas_in_frame(side, transform, size):
    """(columns, rows) of a canvas _resample made from ``side`` by
    ``transform`` (which only scales and shifts): whether each was read
    from inside the image, not from the black beyond its edge."""
    height, width = side.pyramid.levels[0].shape[:2]
    inverse = np.linalg.inv(transform)
    steps = np.arange(size, dtype=np.float64)
    inside = []
    for axis, side_length in ((0, width), (1, height)):
        source = inverse[axis, axis] * steps + inverse[axis, 2]
        inside.append((source >= 0) & (source <= side_length - 1))
    return tuple(inside)


def _lit_direction(side):
    """(direction in degrees, in image coordinates, of the disk's brightness
    centroid from its centre; its distance over the radius), on a copy of
    the disk LIT_RADIUS px in radius. Only pixels whose mirror image through
    the centre is in the frame too count, so a disk cut by the frame's edge
    is not lit towards the part left; the darkest 5% of the disk is the
    floor (a day Moon's unlit part is the sky's brightness)."""
    transform, size = _crop_transform(side.circle, LIT_RADIUS)
    grey = _grey(_resample(side.pyramid, transform, size))
    steps = np.arange(size, dtype=np.float64)
    centre = size / 2.0
    mirrored = 2.0 * centre - steps
    twin = np.clip(np.round(mirrored).astype(int), 0, size - 1)
    # A mirror image off the canvas lies off the disk too.
    seen = [inside & inside[twin] & (mirrored <= size - 1) for inside in _canvas_in_frame(side, transform, size)]
    dx, dy = np.meshgrid(steps - centre, steps - centre)
    disk = dx * dx + dy * dy <= (MASK_FRACTION * LIT_RADIUS) ** 2
    mask = disk & seen[0][None, :] & seen[1][:, None]
    if np.count_nonzero(mask) < 0.5 * np.count_nonzero(disk):
        return 0.0, 0.0
    values = grey[mask]
    values = np.clip(values - np.percentile(values, 5), 0, None)
    total = float(values.sum())
    if total <= 0:
        return 0.0, 0.0
    vx = float((values * dx[mask]).sum()) / (total * LIT_RADIUS)
    vy = float((values * dy[mask]).sum()) / (total * LIT_RADIUS)
    return float(np.degrees(np.arctan2(vy, vx))), float(np.hypot(vx, vy))


def _lit_rotation(user_side, model_side):
    """The rotation (degrees, user canvas -> model canvas) that turns the
    photo's lit side onto the render's, or None when either disk shows no
    clear phase or the two disks' phases differ (see LIT_MIN, LIT_AGREE)."""
    user_angle, user_length = user_side.lit
    model_angle, model_length = model_side.lit
    if min(user_length, model_length) < LIT_MIN or min(user_length, model_length) < LIT_AGREE * max(user_length, model_length):
        return None
    return (model_angle - user_angle) % 360.0


def _descriptor_distances(desc_a, desc_b, norm):
    """The full table of descriptor distances, float32."""
    if norm == cv2.NORM_HAMMING and desc_a.dtype == np.uint8:
        words = -(-desc_a.shape[1] // 8)
        a, b = (np.zeros((len(d), 8 * words), np.uint8) for d in (desc_a, desc_b))
        a[:, : desc_a.shape[1]], b[:, : desc_b.shape[1]] = desc_a, desc_b
        a, b = a.view(np.uint64), b.view(np.uint64)
        table = np.zeros((len(a), len(b)), np.float32)
        for k in range(words):
            table += np.bitwise_count(a[:, None, k] ^ b[None, :, k])
        return table
    a, b = desc_a.astype(np.float32), desc_b.astype(np.float32)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


def _guided_matches(user_pts, user_desc, model_pts, model_desc, norm, rotation, centre, radius):
    """Pairs (user index, model index): each photo keypoint's nearest model
    descriptor among the model keypoints within GUIDE_RADIUS of where the
    rotation puts it, passing a ratio test among those and mutual."""
    if user_desc is None or model_desc is None or len(user_desc) < 2 or len(model_desc) < 2:
        return np.empty((0, 2), int)
    a = np.radians(rotation)
    turn = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    predicted = (user_pts - centre) @ turn.T + centre
    gap = np.hypot(predicted[:, None, 0] - model_pts[None, :, 0], predicted[:, None, 1] - model_pts[None, :, 1])
    table = _descriptor_distances(user_desc, model_desc, norm)
    table = np.where(gap <= GUIDE_RADIUS * radius, table, np.inf)
    rows = np.arange(len(table))
    nearest = table.argmin(axis=1)
    best = table[rows, nearest]
    second = np.partition(table, 1, axis=1)[:, 1]
    keep = np.isfinite(best) & ((best < GUIDED_RATIO * second) | ~np.isfinite(second))
    keep &= table.argmin(axis=0)[nearest] == rows
    return np.column_stack((rows[keep], nearest[keep]))


def _plausible(warp, centre, radius):
    if warp is None or not np.all(np.isfinite(warp)) or abs(warp[2, 2]) < 1e-9:
        return False
    warp = warp / warp[2, 2]
    linear = warp[:2, :2]
    det = np.linalg.det(linear)
    if det <= 0:
        return False  # a mirror: no lens or render does that to the Moon
    singular = np.linalg.svd(linear, compute_uv=False)
    scale = np.sqrt(det)
    if not (SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]) or singular[0] / singular[1] > MAX_ANISOTROPY:
        return False
    if np.hypot(warp[2, 0], warp[2, 1]) * radius > MAX_PERSPECTIVE:
        return False
    mapped = map_points(warp, centre[None])[0]
    return bool(np.hypot(*(mapped - centre)) <= MAX_CENTRE_OFFSET * radius)


def _hull_fraction(points, radius):
    if len(points) < 3:
        return 0.0
    return float(cv2.contourArea(cv2.convexHull(points.astype(np.float32)))) / (np.pi * radius * radius)


def _homography(src, dst, threshold):
    homography, mask = cv2.findHomography(
        src, dst, HOMOGRAPHY_METHOD, threshold, maxIters=2000, confidence=0.999
    )
    if homography is None:
        return None, None
    inliers = mask.ravel().astype(bool)
    if REFINE and inliers.sum() >= 8:
        # Least squares plus Levenberg-Marquardt on the inliers only.
        refined, _ = cv2.findHomography(src[inliers], dst[inliers], 0)
        if refined is not None:
            homography = refined
    return homography / homography[2, 2], inliers


def _estimate(src, dst, centre, radius):
    """Similarity first (4 parameters survive few, noisy matches); a full
    homography replaces it only with enough inliers spread over enough of
    the disk to pin its 8 parameters down. Returns (3x3 warp, inlier mask,
    estimator name)."""
    threshold = RANSAC_THRESHOLD * radius
    if ESTIMATOR == "homography":
        warp, inliers = _homography(src, dst, threshold)
        if warp is None:
            raise HomographyNotFoundError()
        return warp, inliers, "homography"
    affine, mask = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold, maxIters=2000, confidence=0.999, refineIters=10
    )
    if affine is None:
        raise HomographyNotFoundError()
    warp = np.vstack([affine, [0.0, 0.0, 1.0]])
    inliers = mask.ravel().astype(bool)
    if ESTIMATOR == "similarity" or inliers.sum() < HOMOGRAPHY_MIN_INLIERS:
        return warp, inliers, "similarity"
    homography, h_inliers = _homography(src, dst, threshold)
    if (
        homography is not None
        and _plausible(homography, centre, radius)
        and h_inliers.sum() >= inliers.sum()
        and _hull_fraction(src[h_inliers], radius) >= MIN_HULL_FRACTION
    ):
        return homography, h_inliers, "homography"
    return warp, inliers, "similarity"


def _ecc(
    user_work, user_mask, model_work, model_mask, rotation, centre, radius,
    min_correlation=ECC_MIN_CORRELATION, rigid=False, probe=None,
):
    """(3x3 warp user canvas -> model canvas, correlation) from ECC on the
    two normalised disks (affine, or turn and shift only when ``rigid``,
    started from the polar rotation), or None when it does not converge,
    correlates too little, turns away from the polar rotation, is
    implausible, or is not found again from starts ECC_PROBE_DEG away
    either side (or from the rotation ``probe``, when given).
    Measured on whole phone photos where ORB's few keypoints failed:
    0.8-1.4% of the Moon's diameter, correlation 0.41-0.91 on real pairs
    against 0.09 for a disk of noise."""
    motion = cv2.MOTION_EUCLIDEAN if rigid and ECC_RIGID else cv2.MOTION_AFFINE
    stages = _ecc_stages(user_work, user_mask, model_work, model_mask, rotation, centre, motion, ECC_SIGMAS)
    if stages is None:
        return None
    warp, correlation = stages[-1]
    turned = np.degrees(np.arctan2(warp[1, 0], warp[0, 0]))
    if (
        correlation < min_correlation
        or abs(_turn_between(turned, rotation)) > ECC_MAX_TURN_DEG
        or not _plausible(warp, centre, radius)
    ):
        return None
    starts = [rotation + side * ECC_PROBE_DEG for side in ECC_PROBE_SIDES] if probe is None else [probe]
    # The probes stop where ECC_PROBE_SIGMAS ends and are compared with
    # this answer at the same blur.
    reached = stages[len(ECC_PROBE_SIGMAS) - 1][0]
    for start in starts:
        again = _ecc_stages(user_work, user_mask, model_work, model_mask, start, centre, motion, ECC_PROBE_SIGMAS)
        if again is None or _largest_shift(reached, again[-1][0], centre, radius) > ECC_PROBE_AGREE * radius:
            return None
    return warp, float(correlation)


def _ecc_stages(user_work, user_mask, model_work, model_mask, rotation, centre, motion, sigmas):
    """[(warp, correlation) after each blur of ``sigmas``] of ECC with
    ``motion`` from ``rotation`` about ``centre``, coarse to fine, or None
    when it does not converge."""
    a = np.radians(rotation)
    turn = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    turn[:2, 2] = centre - turn[:2, :2] @ centre
    # ECC warps its input (the photo) onto its template (the model): its
    # matrix maps model canvas pixels to photo canvas pixels. OpenCV reads
    # a Euclidean matrix's angle back by its sine, so ECC from a turn past
    # 90 degrees either way diverges: the photo's canvas is first turned
    # by whole quarters (exactly, by np.rot90) to leave ECC 45 at most.
    quarters = int(np.round(rotation / 90.0)) % 4
    if quarters:
        user_work = np.ascontiguousarray(np.rot90(user_work, -quarters))
        user_mask = np.ascontiguousarray(np.rot90(user_mask, -quarters))
    unturn = np.linalg.matrix_power(_quarter_turn(user_work.shape[0]), (4 - quarters) % 4)
    matrix = (np.linalg.inv(unturn) @ np.linalg.inv(turn))[:2].astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, 1e-5)
    model_f, user_f = model_work.astype(np.float32), user_work.astype(np.float32)
    stages = []
    for sigma in sigmas:
        template = cv2.GaussianBlur(model_f, (0, 0), sigma)
        moving = cv2.GaussianBlur(user_f, (0, 0), sigma)
        try:
            correlation, matrix = _find_transform_ecc(template, moving, model_mask, user_mask, matrix, motion, criteria)
        except cv2.error:
            return None
        model_to_user = unturn @ np.vstack([matrix.astype(np.float64), [0.0, 0.0, 1.0]])
        stages.append((np.linalg.inv(model_to_user), float(correlation)))
    return stages


def _find_transform_ecc(template, moving, template_mask, moving_mask, matrix, motion, criteria):
    """cv2.findTransformECC over the pixels valid in both images, each mask
    in its own image's frame (the photo's leaves out its unlit side and
    branches, the render's its own); with the moving image's mask alone
    where the OpenCV build has no findTransformECCWithMask."""
    if hasattr(cv2, "findTransformECCWithMask"):
        return cv2.findTransformECCWithMask(template, moving, template_mask, moving_mask, matrix, motion, criteria, 5)
    return cv2.findTransformECC(template, moving, matrix, motion, criteria, moving_mask, 5)


def _quarter_turn(size):
    """The 3x3 map from the pixels of np.rot90(canvas) to those of a
    ``size`` x ``size`` canvas."""
    return np.array([[0.0, -1.0, size - 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def _largest_shift(warp, other, centre, radius):
    """The largest distance between where ``warp`` and ``other`` take the
    points of the disk's rim (about ``centre``, of ``radius``)."""
    angles = np.radians(np.arange(0.0, 360.0, 15.0))
    rim = np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)], axis=1)
    return float(np.max(np.hypot(*(map_points(warp, rim) - map_points(other, rim)).T)))


def _agreement(user_work, user_mask, model_work, model_mask, warp, sigma=AGREEMENT_SIGMA):
    """How well the two normalised disks agree under ``warp`` (user canvas
    -> model canvas): their correlation (ECC's measure) over the part of
    the model's disk the photo's covers, both blurred by ``sigma`` px."""
    size = (model_work.shape[1], model_work.shape[0])
    moving = cv2.warpPerspective(cv2.GaussianBlur(user_work.astype(np.float32), (0, 0), sigma), warp, size)
    covered = cv2.warpPerspective(user_mask, warp, size, flags=cv2.INTER_NEAREST)
    mask = cv2.bitwise_and(model_mask, covered)
    if cv2.countNonZero(mask) < 100:
        return -1.0
    template = cv2.GaussianBlur(model_work.astype(np.float32), (0, 0), sigma)
    return float(cv2.computeECC(template, moving, mask))


def _detail_energy(work, mask):
    """The disk's detail energy (see DETAIL_SIGMAS) as a normalised canvas:
    mean 128, 40 grey levels a standard deviation, 0 outside the mask."""
    grey = work.astype(np.float32)
    energy = np.abs(grey - cv2.GaussianBlur(grey, (0, 0), DETAIL_SIGMAS[0]))
    energy = cv2.GaussianBlur(energy, (0, 0), DETAIL_SIGMAS[1])
    inside = mask > 0
    values = energy[inside]
    if values.size < 2:
        return np.zeros_like(work)
    scaled = (energy - values.mean()) * (40.0 / (values.std() + 1e-6)) + 128.0
    return np.where(inside, np.clip(scaled, 0, 255), 0).astype(np.uint8)


def _detail_rotation(user_work, user_mask, model_work, model_mask, radius):
    """(user energy, model energy, rotation, peak): the two disks' detail
    energy (_detail_energy) and _polar_rotation on it."""
    user_energy = _detail_energy(user_work, user_mask)
    model_energy = _detail_energy(model_work, model_mask)
    return (user_energy, model_energy) + _polar_rotation(user_energy, user_mask, model_energy, model_mask, radius)


def _ecc_on_detail(
    user_work, user_mask, model_work, model_mask, centre, radius, energy=None, rigid=False,
    min_correlation=DETAIL_MIN_CORRELATION,
):
    """_ecc on the two disks' detail energy, from the rotation polar
    correlation finds on it, for disks whose detail differs in kind (a
    photo's bright rims and rays against a render's shaded bowls): (warp,
    correlation) or None. ``energy``: _detail_rotation's answer, when
    already found; ``rigid``: as for _ecc."""
    user_energy, model_energy, rotation, peak = energy or _detail_rotation(
        user_work, user_mask, model_work, model_mask, radius
    )
    if peak < POLAR_MIN_PEAK:
        return None
    return _ecc(
        user_energy, user_mask, model_energy, model_mask, rotation, centre, radius, min_correlation, rigid
    )


def _guided(user_kp, user_desc, model_kp, model_desc, norm, rotation, centre, radius, min_inliers=GUIDED_MIN_INLIERS):
    """(src, dst, warp, inliers, estimator) from matching guided by the polar
    rotation, or None. Held to a stricter standard than plain matching (more
    inliers, the rotation agreeing with the polar one): a gated search
    always finds some pairs, right or not."""
    if not user_kp or not model_kp:
        return None
    user_pts = np.float32([kp.pt for kp in user_kp])
    model_pts = np.float32([kp.pt for kp in model_kp])
    pairs = _guided_matches(user_pts, user_desc, model_pts, model_desc, norm, rotation, centre, radius)
    if len(pairs) < min_inliers:
        return None
    src, dst = user_pts[pairs[:, 0]], model_pts[pairs[:, 1]]
    try:
        warp, inliers, estimator = _estimate(src, dst, centre, radius)
    except HomographyNotFoundError:
        return None
    turn = np.degrees(np.arctan2(warp[1, 0], warp[0, 0]))
    if (
        inliers.sum() < min_inliers
        or abs(_turn_between(turn, rotation)) > GUIDED_MAX_TURN_DEG
        or not _plausible(warp, centre, radius)
    ):
        return None
    return src, dst, warp, inliers, estimator


@dataclasses.dataclass
class DiskSide:
    """One image of a pair, prepared on its own: its pyramid, its disk (None
    when none was found) and the features of its working canvas per
    (algorithm, radius). The two sides of a request need nothing of each
    other until matching, so they can be prepared concurrently."""

    pyramid: "_Pyramid"
    circle: Circle = None
    features: dict = dataclasses.field(default_factory=dict)
    # True when the circle was fitted to the disk's lit limb (a render's, or
    # a photo's by _refine_limb), to about a per cent.
    on_limb: bool = False

    @property
    def shape(self):
        return self.pyramid.levels[0].shape

    @functools.cached_property
    def lit(self):
        """_lit_direction's reading of the disk, measured once: the lit
        guide, rigid ECC and the last resort each ask it, on every retry."""
        return _lit_direction(self)

    @functools.cached_property
    def blown_out(self):
        """_blown_out_share's reading of the disk, measured once: the
        over-exposure retry, the last resort and the companion each ask
        it, on every retry and for each detector."""
        return _blown_out_share(self)


def prepare_side(image, algorithm, *, render=False):
    """A :class:`DiskSide` for a BGR ``image``: its disk found (a render's
    from its lit limb when ``render`` and the sky is black, else by
    find_moon), and, when ``algorithm``'s working radius does not depend on
    the photo's disk, its canvas described already."""
    pyramid = image if isinstance(image, _Pyramid) else _Pyramid(image)
    circle = _render_disk(pyramid) if render else None
    if circle is not None:
        side = DiskSide(pyramid, circle, on_limb=True)
    else:
        try:
            circle, reduced = _find_moon_fast_how(pyramid)
        except NoMoonError:
            circle, reduced = None, False
        side = _on_limb(pyramid, circle)
        if reduced and not side.on_limb:
            side = _searched_on_limb(pyramid, circle) or side
    radius = working_radius(algorithm)
    if radius is not None and side.circle is not None:
        describe(side, algorithm, radius)
    return side


def find_moon_on_limb(image):
    """find_moon's circle for a BGR or grey ``image``, fitted to the Moon's
    lit limb where that settles it (see _refine_limb): what POST
    /api/moon/detect and ``moontrek detect`` answer. A client crops around
    it with 15% of padding, which a circle on a gibbous Moon's terminator
    (up to 15% of the radius off) can eat. Raises NoMoonError."""
    circle = find_moon(image)
    refined = _refine_limb(_Pyramid(image), circle)
    return refined if refined is not None else circle


def _on_limb(pyramid, circle):
    """A :class:`DiskSide` of ``circle`` found by a search, fitted to its
    lit limb where that settles it."""
    refined = _refine_limb(pyramid, circle) if circle is not None else None
    return DiskSide(pyramid, refined, on_limb=True) if refined is not None else DiskSide(pyramid, circle)


def _searched_on_limb(pyramid, circle):
    """A :class:`DiskSide` on the lit limb of the disk find_moon finds at its
    own scale, when that is ``circle``'s Moon (centre and radius within
    LIMB_MAX_SHIFT of it) and its limb settles it; else None.

    For a circle found on the FIND_SIZE copy whose limb did not settle it:
    there a crescent's lit part, brighter than the rest, can outscore the
    whole disk (phase 114, the unlit side darker than a twilight sky: 19%
    small, and every algorithm then answered 13.7% off), where the search
    at its own scale finds the disk."""
    try:
        found = _find_moon_searched(pyramid)
    except NoMoonError:
        return None
    if _shifted_beyond(found, circle):
        return None
    refined = _refine_limb(pyramid, found)
    return DiskSide(pyramid, refined, on_limb=True) if refined is not None else None


def working_radius(algorithm, user_radius=None):
    """The canvas radius for ``algorithm``: the photo's own disk radius
    within [MIN_WORK_RADIUS, the algorithm's largest] (never resample a
    photo's disk above its resolution: no detail to gain, only cost), or
    the largest alone when that is MIN_WORK_RADIUS. None when it depends on
    a ``user_radius`` not given."""
    largest = ALGORITHM_SETTINGS.get(algorithm.name, {}).get("radius", WORK_RADIUS)
    if largest <= MIN_WORK_RADIUS:
        return int(largest)
    if user_radius is None:
        return None
    return int(round(min(largest, max(MIN_WORK_RADIUS, user_radius))))


def describe(side, algorithm, radius, clip=(0.0, False), retry=False):
    """(canvas, mask, source-to-canvas transform, keypoints, descriptors) of
    ``side``'s disk at ``radius`` (``clip``: normalise_disk's ``clip_share``
    and ``unshaded``; ``retry``: with the detector's "retry_detector"
    settings), computed once."""
    key = (algorithm.name, algorithm.implementation, radius, clip, retry)
    if key not in side.features:
        settings = ALGORITHM_SETTINGS.get(algorithm.name, {})
        work, mask, to_work = normalise_disk(side.pyramid, side.circle, radius, *clip)
        largest = settings.get("max_keypoint_size")
        changes = settings.get("retry_detector", {}) if retry else {}
        # A detector of this call's alone, set for it and set back.
        with _DETECTORS.lend(algorithm) as detector:
            saved = {setter: getattr(detector, "get" + setter[3:])() for setter in changes}
            try:
                for setter, value in changes.items():
                    getattr(detector, setter)(value)
                keypoints, descriptors = _detect_and_compute(
                    detector, work, mask, None if largest is None else largest * radius
                )
            finally:
                for setter, value in saved.items():
                    getattr(detector, setter)(value)
        side.features[key] = (work, mask, to_work, keypoints, descriptors)
    return side.features[key]


def _detect_and_compute(detector, work, mask, max_size=None):
    """Keypoints and descriptors of ``work``, leaving out keypoints larger
    than ``max_size`` before they are described."""
    if hasattr(detector, "setMaxKeypointSize"):
        # moontrek's SURF drops them before orienting them too. Set on
        # every call: the detector is lent to every description in turn.
        detector.setMaxKeypointSize(max_size or 0.0)
        return surf_pool.detect_and_compute(detector, work, mask)
    if max_size is None:
        return detector.detectAndCompute(work, mask)
    keypoints = [k for k in detector.detect(work, mask) if k.size <= max_size]
    return detector.compute(work, keypoints)


def register_disks(user, model, algorithm, user_circle, model_circle):
    """Register with the two disks given; see :func:`register_moon`."""
    user_pyramid = user if isinstance(user, _Pyramid) else _Pyramid(user)
    model_pyramid = model if isinstance(model, _Pyramid) else _Pyramid(model)
    return register_sides(DiskSide(user_pyramid, user_circle), DiskSide(model_pyramid, model_circle), algorithm)


def _blown_out_share(side):
    """The share of ``side``'s disk blown out (every channel clipped), on a
    small resampled copy, over the part of the disk in the frame: a white
    disk the frame cuts is as over-exposed as a whole one (the black off
    the frame had counted as unclipped)."""
    transform, size = _crop_transform(side.circle, BLOWN_OUT_RADIUS)
    canvas = _resample(side.pyramid, transform, size)
    columns, rows = _canvas_in_frame(side, transform, size)
    disk = (_canvas_masks(size, BLOWN_OUT_RADIUS)[0] > 0) & rows[:, None] & columns[None, :]
    if not disk.any():
        return 0.0
    grey = canvas.min(axis=2) if canvas.ndim == 3 else canvas
    return float(np.mean(grey[disk] >= BLOWN_OUT_LEVEL))


def _disk_scale(warp):
    """How much ``warp`` scales the disk: the root of its linear part's
    determinant (``warp`` a 3x3 warp, or a 2x2 derivative of one)."""
    return float(np.sqrt(abs(np.linalg.det(warp[:2, :2]))))


def _linear_at(warp, point):
    """The 2x2 derivative of the 3x3 ``warp`` at ``point`` (its linear part
    where the warp is affine)."""
    x, y = point
    w = warp[2, 0] * x + warp[2, 1] * y + warp[2, 2]
    mapped = (warp[:2, 0] * x + warp[:2, 1] * y + warp[:2, 2]) / w
    return (warp[:2, :2] - np.outer(mapped, warp[2, :2])) / w


def _scale_fits(warp, inliers, max_scale):
    """Whether an answer on ``inliers`` point matches scales the disk by at
    most ``max_scale`` (None: any plausible scale), when its evidence is weak
    (see LIMB_MAX_SCALE)."""
    if max_scale is None or inliers >= HOMOGRAPHY_MIN_INLIERS:
        return True
    return abs(_disk_scale(warp) - 1.0) <= max_scale


def _solve(
    user_features, model_features, algorithm, radius, ecc=True, max_scale=None, lit=None, rigid=None, ecc_least=0.0,
):
    """Match two described canvases and estimate the warp between them:
    (src, dst, warp, inliers, estimator, matched, guided, ecc_correlation),
    or NotEnoughKeypointsError / HomographyNotFoundError; ``ecc=False``
    leaves ECC out of the fallbacks, ``ecc_least`` raises the correlation
    its answers must reach; ``max_scale`` bounds the scale of
    answers on weak evidence (see _scale_fits); ``lit``, when given, is
    called for the lit side's rotation (_lit_rotation) once the polar one
    has guided nothing; ``rigid``, when given, is called before ECC: True
    for ECC that turns and shifts only (see ECC_RIGID)."""
    user_work, user_mask, user_to_work, user_kp, user_desc = user_features
    model_work, model_mask, model_to_work, model_kp, model_desc = model_features
    size = user_work.shape[0]
    centre = np.array([size / 2.0, size / 2.0])

    norm = _norm(algorithm)
    pairs = _mutual_ratio_matches(user_desc, model_desc, norm)
    src = np.float32([user_kp[i].pt for i in pairs[:, 0]]).reshape(-1, 2)
    dst = np.float32([model_kp[j].pt for j in pairs[:, 1]]).reshape(-1, 2)
    matched = len(src)
    guided, ecc_correlation = False, None
    try:
        if matched:
            keep = _consistent(src, dst, centre, radius)
            src, dst = src[keep], dst[keep]
        if len(src) < MIN_MATCHES:
            raise NotEnoughKeypointsError()
        warp, inliers, estimator = _estimate(src, dst, centre, radius)
        if (
            inliers.sum() < MIN_INLIERS
            or not _plausible(warp, centre, radius)
            or not _scale_fits(warp, inliers.sum(), max_scale)
        ):
            raise HomographyNotFoundError()
        if inliers.sum() < SECOND_OPINION_INLIERS:
            # Weak evidence: ask the matching the polar rotation guides too.
            rotation, peak = _polar_rotation(user_work, user_mask, model_work, model_mask, radius)
            if peak >= POLAR_MIN_PEAK:
                found = _guided(user_kp, user_desc, model_kp, model_desc, norm, rotation, centre, radius)
                if (
                    found is not None
                    and found[3].sum() > inliers.sum()
                    and _scale_fits(found[2], found[3].sum(), max_scale)
                    and _agreement(user_work, user_mask, model_work, model_mask, found[2])
                    > _agreement(user_work, user_mask, model_work, model_mask, warp)
                ):
                    src, dst, warp, inliers, estimator = found
                    matched, guided = len(src), True
    except (NotEnoughKeypointsError, HomographyNotFoundError) as failure:
        # Matching alone failed: the disks' rotation from polar correlation
        # guides a second matching, and failing that, ECC on the disks, and
        # failing that, ECC on their detail energy.
        rotation, peak = _polar_rotation(user_work, user_mask, model_work, model_mask, radius)
        found, energy = None, None
        if peak >= POLAR_MIN_PEAK:
            found = _guided(user_kp, user_desc, model_kp, model_desc, norm, rotation, centre, radius)
        else:
            # Too low to guide (a photo's rims and rays against a render's
            # shaded bowls: 3.36-3.46 on the made-up maps' seed 5200, where
            # the detail energy peaked at 4.45-4.52 within 5 degrees): the
            # rotation found on the detail energy guides instead, held to
            # the same standard (GUIDED_MIN_INLIERS, GUIDED_MAX_TURN_DEG).
            energy = _detail_rotation(user_work, user_mask, model_work, model_mask, radius)
            if energy[3] >= POLAR_MIN_PEAK:
                found = _guided(user_kp, user_desc, model_kp, model_desc, norm, energy[2], centre, radius)
        if found is not None and not _scale_fits(found[2], found[3].sum(), max_scale):
            found = None
        lit_turn, lit_ecc = None, None
        turn_only = bool(ecc and rigid is not None and rigid())
        least = max(ECC_MIN_CORRELATION, ecc_least)
        if found is None and lit is not None:
            lit_rotation = lit()
            if lit_rotation is not None:
                lit_turn, _ = _polar_rotation(user_work, user_mask, model_work, model_mask, radius, near=lit_rotation)
                # Found again from the lit side's own rotation, unless the
                # polar correlation hardly moved it.
                probe = lit_rotation if abs(_turn_between(lit_rotation, lit_turn)) >= 2.0 else None
                found = _guided(
                    user_kp, user_desc, model_kp, model_desc, norm, lit_turn, centre, radius, min_inliers=LIT_MIN_INLIERS
                )
                if found is not None and not _scale_fits(found[2], found[3].sum(), max_scale):
                    found = None
                if found is not None and ecc and found[3].sum() < LIT_SECOND_OPINION_INLIERS:
                    lit_ecc = _ecc(
                        user_work, user_mask, model_work, model_mask, lit_turn, centre, radius, least, turn_only, probe
                    )
                    if _ecc_fits(lit_ecc, max_scale, centre, radius):
                        found = None
                    else:
                        lit_ecc = None
                if found is not None and found[3].sum() < LIT_ALONE_MIN_INLIERS:
                    # Not on so few matches alone (see LIT_ALONE_MIN_INLIERS).
                    found = None
        if found is not None:
            src, dst, warp, inliers, estimator = found
            matched, guided = len(src), True
        else:
            found, estimator = lit_ecc, "ecc"
            if ecc and found is None and peak >= POLAR_MIN_PEAK:
                found = _ecc(
                    user_work, user_mask, model_work, model_mask, rotation, centre, radius, least, rigid=turn_only
                )
            if ecc and lit_turn is not None and not _ecc_fits(found, max_scale, centre, radius):
                found = _ecc(
                    user_work, user_mask, model_work, model_mask, lit_turn, centre, radius, least, turn_only, probe
                )
            if ecc and not _ecc_fits(found, max_scale, centre, radius):
                found = _ecc_on_detail(
                    user_work, user_mask, model_work, model_mask, centre, radius, energy, turn_only,
                    max(DETAIL_MIN_CORRELATION, ecc_least),
                )
                estimator = "ecc_detail"
            if not _ecc_fits(found, max_scale, centre, radius):
                raise failure
            warp, ecc_correlation = _ecc_answer(found, max_scale, centre, radius)
            src, dst, inliers = _ecc_inliers(user_kp, model_kp, pairs, warp, radius)
            guided = True
    # With both circles on their limbs (max_scale set) the two disks are
    # one size on their canvases to about a per cent, which a few matched
    # points (along a crescent's sliver, say) tell less surely: on 6-9
    # inliers the similarity's scale strayed by 2.5-4.2% on the made-up
    # maps' phase set (every such answer 2.0-5.1% of the side off, the
    # right ones 0.979-1.019). On too few inliers to try a homography it
    # is fitted again turned and shifted only; on more it made no
    # difference (README, "Pipelines").
    if estimator == "similarity" and max_scale is not None and inliers.sum() < HOMOGRAPHY_MIN_INLIERS:
        rigid_warp = _rigid_fit(src[inliers], dst[inliers])
        if _plausible(rigid_warp, centre, radius):
            warp = rigid_warp
    return src, dst, warp, inliers, estimator, matched, guided, ecc_correlation


def _rigid_fit(src, dst):
    """The turn and shift taking the points ``src`` closest to ``dst``
    (least squares, no scale), as a 3x3 warp."""
    src, dst = src.astype(np.float64), dst.astype(np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - src_mean, dst - dst_mean
    angle = np.arctan2(np.sum(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]), np.sum(a * b))
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    warp = np.eye(3)
    warp[:2, :2] = turn
    warp[:2, 2] = dst_mean - turn @ src_mean
    return warp


def _ecc_inliers(user_kp, model_kp, pairs, warp, radius):
    """(src, dst, inliers) for an ECC answer: the plain matches, those that
    agree with it its inliers."""
    src = np.float32([user_kp[i].pt for i in pairs[:, 0]]).reshape(-1, 2)
    dst = np.float32([model_kp[j].pt for j in pairs[:, 1]]).reshape(-1, 2)
    return src, dst, np.hypot(*(map_points(warp, src) - dst).T) <= 2 * RANSAC_THRESHOLD * radius


def _ecc_fits(found, max_scale, centre, radius):
    """Whether an ECC answer (warp, correlation) exists and is one the
    disks allow: with both circles on their limbs (``max_scale`` set) it
    scales the disk by ECC_MAX_SCALE at most and turns the globe out of the
    image plane by ECC_MAX_TILT_DEG at most (read as _on_sphere reads it);
    else it scales the disk by ECC_FREE_MAX_SCALE at most."""
    if found is None:
        return False
    if max_scale is None:
        return _scale_fits(found[0], 0, ECC_FREE_MAX_SCALE)
    if not _scale_fits(found[0], 0, min(max_scale, ECC_MAX_SCALE)):
        return False
    turn = _globe_turn(found[0], centre, radius)
    return turn is not None and _tilt_deg(turn) <= ECC_MAX_TILT_DEG


def _ecc_answer(found, max_scale, centre, radius):
    """An ECC answer that fits (warp, correlation) as the one to give: its
    warp read as a turn of the globe (_on_sphere) when both circles are on
    their limbs (``max_scale`` set)."""
    warp, correlation = found
    if max_scale is not None:
        warp = _on_sphere(warp, centre, radius)
    return warp, correlation


# An ECC answer lines the disks' detail up by turning and shifting the
# photo's disk (or by an affine map, on a near-full one), and so moves its
# limb with its detail. But with both circles on their limbs the disks
# already coincide; what moves the detail against the limb is the
# libration: the photo and the render see the globe from a few degrees
# apart, and the face turns inside a limb that stays put. So an ECC answer
# is read as the turn of the globe closest to it over the inner
# SPHERE_READ of the disk (lifting both canvases' points onto the sphere)
# and replaced by the homography fitted to that turn over the inner
# SPHERE_FIT, as the photo-render sets' truths are made. On the 637 ECC
# answers of eleven generated sets (every algorithm) 487 came closer and
# 72 went further (by 0.11% of the side at most), their mean error 6.9%
# less, 19% on the made-up maps' phone photos; one crescent 2.07% off came
# within 2%, and none went over it (README, "Pipelines"). Point matches'
# similarities are left alone: on the shared maps' phase sets as many got
# worse as better.
SPHERE_READ = 0.8
SPHERE_FIT = 0.9
SPHERE_GRID = 25


def _disk_grid(centre, radius, fraction, count=SPHERE_GRID):
    """A square grid of points over the inner ``fraction`` of the disk."""
    steps = np.linspace(-fraction, fraction, count)
    gx, gy = np.meshgrid(steps, steps)
    keep = gx * gx + gy * gy <= fraction * fraction
    return np.column_stack([centre[0] + radius * gx[keep], centre[1] + radius * gy[keep]])


def _lifted(points, centre, radius):
    """Canvas points of the disk as unit vectors of the sphere (x and y
    along the canvas, z towards the viewer)."""
    xy = (np.asarray(points, np.float64) - centre) / radius
    return np.column_stack([xy, np.sqrt(np.clip(1.0 - (xy * xy).sum(axis=1), 0.0, None))])


def _globe_turn(warp, centre, radius):
    """The turn of the globe (a 3x3 rotation of _lifted's unit vectors)
    closest to ``warp`` (user canvas -> model canvas, the disks at
    ``radius`` about ``centre`` on both) over the inner SPHERE_READ of the
    disk, or None when ``warp`` moves that disk too far off the other to
    read one."""
    src = _disk_grid(centre, radius, SPHERE_READ)
    dst = map_points(warp, src)
    keep = np.hypot(*(dst - centre).T) < 0.97 * radius
    if keep.sum() < 10:
        return None
    # The rotation taking one set of unit vectors closest to the other
    # (Kabsch: the SVD of their cross-covariance, kept proper).
    u, _, vt = np.linalg.svd(_lifted(src[keep], centre, radius).T @ _lifted(dst[keep], centre, radius))
    return vt.T @ np.diag([1.0, 1.0, np.sign(np.linalg.det(vt.T @ u.T))]) @ u.T


def _tilt_deg(turn):
    """How far (degrees) a turn of the globe moves the point facing the
    viewer: the libration part of it, not the roll about the line of sight."""
    return float(np.degrees(np.arccos(np.clip(turn[2, 2], -1.0, 1.0))))


def _on_sphere(warp, centre, radius):
    """``warp`` (user canvas -> model canvas, the disks at ``radius`` about
    ``centre`` on both) read as a turn of the globe: the homography fitted
    to that turn (see SPHERE_READ), or ``warp`` itself when it moves the
    inner disk too far off the other to read one."""
    turn = _globe_turn(warp, centre, radius)
    if turn is None:
        return warp
    points = _disk_grid(centre, radius, SPHERE_FIT)
    seen = _lifted(points, centre, radius) @ turn.T
    visible = seen[:, 2] > 0
    if visible.sum() < 10:
        return warp
    homography, _ = cv2.findHomography(points[visible], centre + radius * seen[visible, :2], 0)
    if homography is None or not _plausible(homography, centre, radius):
        return warp
    return homography / homography[2, 2]


def register_sides(user_side, model_side, algorithm):
    """Register two prepared sides (see :func:`prepare_side`); raise
    NoMoonError naming the image without a disk.

    When the photo's disk does not register, or no disk in it stood out as
    the Moon, the other disks that might be it are tried in turn (see
    :func:`_other_disks`): a whole photo's Moon may have been passed over
    for a lamp, or doubted for the street lamps of its own size beside it,
    and the render tells which disk is the Moon where brightness and shape
    cannot."""
    if model_side.circle is None:
        # Say which image: the person can then fix the right one.
        field = "user-file" if user_side.circle is None else "model-file"
        raise NoMoonError(f"No Moon was found in the {field}.")
    failure = NoMoonError("No Moon was found in the user-file.")
    if user_side.circle is not None:
        try:
            return _register_disk(user_side, model_side, algorithm, companion=True)
        except (NotEnoughKeypointsError, HomographyNotFoundError) as error:
            failure = error
    for circle in _other_disks(user_side.pyramid, user_side.circle):
        try:
            result = _register_disk(_on_limb(user_side.pyramid, circle), model_side, algorithm, finer=False)
        except (NotEnoughKeypointsError, HomographyNotFoundError):
            continue
        # A disk passed over needs matches to back it, or ECC's close fit:
        # ECC lines up any textured glow with the render (a Sun's glare
        # 0.35). Not ECC on the detail energy: any speckle has some.
        if result.inliers >= OTHER_DISK_MIN_INLIERS or (
            result.extras["estimator"] == "ecc" and result.extras["ecc_correlation"] >= OTHER_DISK_MIN_ECC
        ):
            return result
    raise failure


def _other_disks(pyramid, tried):
    """Up to OTHER_DISKS disks of the photo, other than ``tried``, that may
    be the Moon (moon.moon_candidates on the pyramid level at most
    moon.MAX_WORK_PIXELS large), in the photo's pixels."""
    level, k = _search_level(pyramid)
    found = []
    for c in moon_candidates(level, OTHER_DISKS + 1):
        c = _Pyramid.to_original(c, k)
        if tried is not None and (
            np.hypot(c.x - tried.x, c.y - tried.y) <= 0.3 * tried.radius and abs(c.radius - tried.radius) <= 0.3 * tried.radius
        ):
            continue
        found.append(c)
    return found[:OTHER_DISKS]


def _rigid_ecc(user_side, max_scale):
    """Whether ECC should turn and shift only (see ECC_RIGID): both circles
    on their limbs (``max_scale`` set) and the photo's disk showing a phase
    (its lit side LIT_MIN of the radius off centre or more). A near-full
    disk's detail holds an affine ECC in place, and there the circles' own
    per cent of scale and the libration need its freedom: turned and
    shifted only, the made-up maps' seed 7300 lost 4 photo-render pairs and
    8 phone photos of 70 with AKAZE."""
    return max_scale is not None and user_side.lit[1] >= LIT_MIN


def _solve_sides(user_side, model_side, algorithm, radius, max_scale, retry=False, ecc=True):
    """(_solve's answer, user features, model features) for two sides,
    described with the detector's ``retry`` setting when asked (``ecc``:
    as for _solve); raise NotEnoughKeypointsError or
    HomographyNotFoundError."""
    user_features = describe(user_side, algorithm, radius, retry=retry)
    model_features = describe(model_side, algorithm, radius, retry=retry)
    lit = functools.cache(lambda: _lit_rotation(user_side, model_side))
    rigid = functools.cache(lambda: _rigid_ecc(user_side, max_scale))
    try:
        solved = _solve(
            user_features, model_features, algorithm, radius, ecc=ecc, max_scale=max_scale, lit=lit, rigid=rigid
        )
        return solved, user_features, model_features
    except (NotEnoughKeypointsError, HomographyNotFoundError):
        # An over-exposed photo's highlands are flat white, where the render
        # still shows terrain that matches nothing: flatten the same share
        # of the render's disk and try again.
        share = user_side.blown_out
        if share < BLOWN_OUT_MIN_SHARE:
            raise
        # Two readings of where the photo blew out: under the render's own
        # shading (the phases agree, as for the client's renders made for
        # the photo's moment), else under none (a near-full photo against a
        # render with a phase). The second is a guess about the render: only
        # point matches may back it, as ECC lines up the few specks of maria
        # left anywhere near (2 of its 4 answers there on the phone sets
        # were 2.5% and 3.6% of the diameter off). On the first, ECC is
        # held to FLATTENED_ECC_MIN, and not asked of a disk blown out over
        # OVEREXPOSED_SHARE: against a render flattened as much, both
        # canvases are flat but for the rounding the normalisation lifts,
        # which ECC lined up at 0.65 for a white lamp globe.
        for unshaded in (False, True):
            model_features = describe(model_side, algorithm, radius, (round(share, 2), unshaded), retry=retry)
            try:
                solved = _solve(
                    user_features, model_features, algorithm, radius,
                    ecc=ecc and not unshaded and share < OVEREXPOSED_SHARE, max_scale=max_scale,
                    lit=None if unshaded else lit, rigid=rigid, ecc_least=FLATTENED_ECC_MIN,
                )
                return solved, user_features, model_features
            except (NotEnoughKeypointsError, HomographyNotFoundError):
                if unshaded:
                    if share >= OVEREXPOSED_SHARE:
                        raise NotEnoughKeypointsError(OVEREXPOSED) from None
                    raise


def _last_resort(user_side, model_side, algorithm, radius, max_scale, failure):
    """_solve_sides's answer from ECC on the disks when every other way
    failed and their polar peak, though under POLAR_MIN_PEAK, reaches
    WEAK_PEAK: held to WEAK_PEAK_MIN_CORRELATION; else raise ``failure``.
    Last, so that it never takes the place of an answer the matching
    (after the over-exposure or detector retries) would give."""
    if user_side.blown_out >= WEAK_PEAK_MAX_BLOWN:
        raise failure
    user_features = describe(user_side, algorithm, radius)
    model_features = describe(model_side, algorithm, radius)
    user_work, user_mask, _, user_kp, user_desc = user_features
    model_work, model_mask, _, model_kp, model_desc = model_features
    rotation, peak = _polar_rotation(user_work, user_mask, model_work, model_mask, radius)
    if not WEAK_PEAK <= peak < POLAR_MIN_PEAK:
        raise failure
    centre = np.array([user_work.shape[0] / 2.0] * 2)
    found = _ecc(
        user_work, user_mask, model_work, model_mask, rotation, centre, radius, WEAK_PEAK_MIN_CORRELATION,
        _rigid_ecc(user_side, max_scale),
    )
    if not _ecc_fits(found, max_scale, centre, radius):
        raise failure
    warp, correlation = _ecc_answer(found, max_scale, centre, radius)
    pairs = _mutual_ratio_matches(user_desc, model_desc, _norm(algorithm))
    src, dst, inliers = _ecc_inliers(user_kp, model_kp, pairs, warp, radius)
    return (src, dst, warp, inliers, "ecc", len(pairs), True, correlation), user_features, model_features


def _solve_at(user_side, model_side, algorithm, radius, max_scale, ecc=True):
    """_solve_sides's answer at ``radius``: plainly, else with the detector's
    retry setting, else (with ``ecc``) _last_resort's. Without ``ecc``,
    point matches only."""
    try:
        try:
            return _solve_sides(user_side, model_side, algorithm, radius, max_scale, ecc=ecc)
        except (NotEnoughKeypointsError, HomographyNotFoundError):
            # A detector with a setting for more keypoints (see
            # ALGORITHM_SETTINGS) tries once more with it: only where it
            # failed, for what the setting costs everywhere.
            if not ALGORITHM_SETTINGS.get(algorithm.name, {}).get("retry_detector"):
                raise
            found = _solve_sides(user_side, model_side, algorithm, radius, max_scale, True, ecc)
            solved = found[0]
            if int(solved[3].sum()) < RETRY_MIN_INLIERS:
                raise HomographyNotFoundError()
            return found
    except (NotEnoughKeypointsError, HomographyNotFoundError) as failure:
        if not ecc:
            raise
        return _last_resort(user_side, model_side, algorithm, radius, max_scale, failure)


def _finer_radius(user_radius, radius):
    """The working radius to try again at once everything at ``radius``
    failed (see FINER_WORK_RADIUS), or None when the photo's disk holds too
    little more detail than that canvas."""
    finer = int(round(min(FINER_WORK_RADIUS, user_radius)))
    return finer if finer >= FINER_MIN_GAIN * radius else None


def _solve_disk(user_side, model_side, algorithm, max_scale, finer, ecc=True):
    """(radius, _solve_at's answer) for two sides that have their disks:
    at the working radius, then, with ``finer``, on a finer canvas when
    everything there failed (point matches only; see FINER_WORK_RADIUS).
    ``ecc``: as for _solve_at, at the working radius."""
    radius = working_radius(algorithm, user_side.circle.radius)
    try:
        return radius, _solve_at(user_side, model_side, algorithm, radius, max_scale, ecc)
    except (NotEnoughKeypointsError, HomographyNotFoundError) as failure:
        larger = _finer_radius(user_side.circle.radius, radius) if finer else None
        if larger is None:
            raise
        try:
            found = _solve_at(user_side, model_side, algorithm, larger, max_scale, ecc=False)
        except (NotEnoughKeypointsError, HomographyNotFoundError):
            # The first failure says why (an over-exposed photo, say).
            raise failure from None
        if int(found[0][3].sum()) < RETRY_MIN_INLIERS:
            raise failure
        return larger, found


def _companion(algorithm):
    """The algorithm whose features answer for ``algorithm`` when its own
    found nothing (ALGORITHM_SETTINGS' "companion"), or None."""
    name = ALGORITHM_SETTINGS.get(algorithm.name, {}).get("companion")
    return get_algorithm(name) if name else None


def _register_disk(user_side, model_side, algorithm, finer=True, companion=False):
    """register_sides for two sides that have their disks; ``finer``: try a
    finer canvas when everything at the working radius failed (see
    FINER_WORK_RADIUS); ``companion``: then let the companion detector's
    point matches answer (see COMPANION_MIN_INLIERS)."""
    user, model = user_side.pyramid.levels[0], model_side.pyramid.levels[0]
    user_circle, model_circle = user_side.circle, model_side.circle
    max_scale = LIMB_MAX_SCALE if user_side.on_limb and model_side.on_limb else None
    features = algorithm
    try:
        radius, (solved, user_features, model_features) = _solve_disk(
            user_side, model_side, algorithm, max_scale, finer
        )
    except (NotEnoughKeypointsError, HomographyNotFoundError) as failure:
        features = _companion(algorithm) if companion else None
        if features is None:
            raise
        # A disk white all over keeps a few maria at most, which the
        # working canvas shows as well as a finer one (see COMPANION_MIN_INLIERS).
        try:
            radius, (solved, user_features, model_features) = _solve_disk(
                user_side, model_side, features, max_scale,
                finer and user_side.blown_out < OVEREXPOSED_SHARE, ecc=False,
            )
        except (NotEnoughKeypointsError, HomographyNotFoundError):
            raise failure from None
        if int(solved[3].sum()) < COMPANION_MIN_INLIERS[features.name]:
            raise failure
    src, dst, warp, inliers, estimator, matched, guided, ecc_correlation = solved
    _, _, user_to_work, user_kp, _ = user_features
    _, _, model_to_work, model_kp, _ = model_features

    # Back to the server's convention: user pixels -> fitted model pixels.
    model_h, model_w = model.shape[:2]
    fit_w, fit_h = fitted_size(model_w, model_h, user.shape[1], user.shape[0])
    if min(fit_w, fit_h) < 1:
        # A model far more elongated than the photo fits in no pixels at all.
        raise HomographyNotFoundError()
    fx, fy = fit_w / model_w, fit_h / model_h
    fitted_to_work = model_to_work @ np.diag([1.0 / fx, 1.0 / fy, 1.0])
    homography = np.linalg.inv(fitted_to_work) @ warp @ user_to_work
    homography /= homography[2, 2]

    work_to_user = np.linalg.inv(user_to_work)
    work_to_fitted = np.linalg.inv(fitted_to_work)
    user_points = map_points(work_to_user, src[inliers])
    model_points = map_points(work_to_fitted, dst[inliers])
    error = np.hypot(*(map_points(homography, user_points) - model_points).T)
    fitted_circle = dataclasses.replace(
        model_circle, x=model_circle.x * fx, y=model_circle.y * fy, radius=model_circle.radius * np.sqrt(fx * fy)
    )
    # Read at the disk's centre: a homography's linear part is its
    # derivative at the canvas's corner, not on the disk.
    size = user_features[0].shape[0]
    linear = _linear_at(warp, (size / 2.0, size / 2.0))
    return RegistrationResult(
        homography=homography,
        algorithm=algorithm.name,
        implementation=algorithm.implementation,
        pipeline="moon",
        keypoints_user=len(user_kp),
        keypoints_model=len(model_kp),
        matches=int(matched),
        inliers=int(inliers.sum()),
        extras={
            # In pixels of the fitted model image, the frame H maps into.
            # None when no point match supports the answer (estimator "ecc").
            "reprojection_error_px": round(float(np.mean(error)), 3) if len(error) else None,
            "circles": {"user": user_circle.as_dict(), "model": fitted_circle.as_dict()},
            "estimator": estimator,
            # True when plain matching failed (or was weak: see
            # SECOND_OPINION_INLIERS) and the polar rotation guided it.
            "guided": guided,
            "consistent_matches": int(len(src)),
            "rotation_deg": round(float(np.degrees(np.arctan2(linear[1, 0], linear[0, 0]))) % 360.0, 3),
            "disk_scale": round(_disk_scale(linear), 4),
            "working_radius_px": radius,
            **({"ecc_correlation": round(ecc_correlation, 4)} if ecc_correlation is not None else {}),
            # Whose keypoints answered, when not the algorithm's own.
            **({"features": features.name} if features.name != algorithm.name else {}),
        },
        inlier_points=(user_points, model_points),
    )


def register_moon(user, model, algorithm):
    """Register a BGR user photo onto a BGR model render with ``algorithm``
    (an :class:`~moontrek.registration.algorithms.Algorithm`) by way of the
    Moon's disk in each. Raises NoMoonError when a disk is missing,
    NotEnoughKeypointsError or HomographyNotFoundError when no plausible
    answer is found."""
    return register_sides(prepare_side(user, algorithm), prepare_side(model, algorithm, render=True), algorithm)
