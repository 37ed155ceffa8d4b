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
6. refuse implausible answers with the documented registration errors;
7. compose back to the server's convention (user pixels to pixels of the
   model fitted to the user image).
"""

import dataclasses
import threading

import cv2
import numpy as np

from .errors import HomographyNotFoundError, NoMoonError, NotEnoughKeypointsError
from .geometry import fitted_size, map_points
from .moon import find_moon
from .result import RegistrationResult

__all__ = ["register_moon", "register_disks", "normalise_disk", "WORK_RADIUS"]

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
# Long side of the copy the disk is looked for in.
FIND_SIZE = 160
FIND_MIN_FRACTION = 0.15

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
    return image.astype(np.float32).sum(axis=2)


def _crop_transform(circle, radius):
    """Affine 3x3 mapping source pixels to the working canvas, and its size."""
    size = int(2 * round(radius * CANVAS_FACTOR))
    scale = radius / float(circle.radius)
    transform = np.array(
        [[scale, 0.0, size / 2.0 - scale * circle.x], [0.0, scale, size / 2.0 - scale * circle.y], [0.0, 0.0, 1.0]]
    )
    return transform, size


def _resample(image, transform, size):
    scale = transform[0, 0]
    half = size / (2.0 * scale)
    cx, cy = (size / 2.0 - transform[0, 2]) / scale, (size / 2.0 - transform[1, 2]) / scale
    x0, y0 = int(np.floor(cx - half)) - 1, int(np.floor(cy - half)) - 1
    x1, y1 = int(np.ceil(cx + half)) + 2, int(np.ceil(cy + half)) + 2
    height, width = image.shape[:2]
    # Crop first so the resampling only touches the disk's neighbourhood,
    # then warp the crop: INTER_AREA when shrinking keeps crater detail
    # from aliasing.
    crop = image[max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)]
    crop = cv2.copyMakeBorder(
        crop,
        max(-y0, 0),
        max(y1 - height, 0),
        max(-x0, 0),
        max(x1 - width, 0),
        cv2.BORDER_CONSTANT,
        value=0,
    )
    if scale < 1.0:
        shrunk_w, shrunk_h = max(1, int(round(crop.shape[1] * scale))), max(1, int(round(crop.shape[0] * scale)))
        shrunk = cv2.resize(crop, (shrunk_w, shrunk_h), interpolation=cv2.INTER_AREA)
        sx, sy = shrunk_w / crop.shape[1], shrunk_h / crop.shape[0]
        local = np.array([[sx, 0, 0], [0, sy, 0], [0, 0, 1.0]]) @ np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1.0]])
        crop = shrunk
    else:
        local = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1.0]])
    remaining = transform @ np.linalg.inv(local)
    return cv2.warpAffine(crop, remaining[:2], (size, size), flags=cv2.INTER_LINEAR, borderValue=0)


def _smooth(image, sigma):
    """A wide Gaussian blur computed at a quarter of the resolution: these
    blurs only carry shading, and full-size wide kernels dominated the cost."""
    height, width = image.shape[:2]
    small = cv2.resize(image, (width // 4, height // 4), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / 4.0)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _find_moon_fast(image):
    """find_moon on a copy no longer than FIND_SIZE: a disk's position and
    size need far fewer pixels than its craters do."""
    longer = max(image.shape[:2])
    if longer <= FIND_SIZE:
        return find_moon(image)
    factor = FIND_SIZE / float(longer)
    small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    factor_x, factor_y = small.shape[1] / image.shape[1], small.shape[0] / image.shape[0]
    try:
        circle = find_moon(small)
    except NoMoonError:
        circle = None
    # Uploads are cropped around the disk; a Moon small in its frame is the
    # exception and is looked for again at the detector's own scale.
    if circle is None or circle.radius < FIND_MIN_FRACTION * FIND_SIZE:
        return find_moon(image)
    return dataclasses.replace(
        circle,
        x=(circle.x + 0.5) / factor_x - 0.5,
        y=(circle.y + 0.5) / factor_y - 0.5,
        radius=circle.radius / np.sqrt(factor_x * factor_y),
    )


def normalise_disk(image, circle, radius=WORK_RADIUS):
    """Resample ``circle``'s disk of a BGR ``image`` to ``radius`` and
    normalise it photometrically.

    Returns (8-bit grey canvas, detection mask, 3x3 source-to-canvas transform).
    """
    transform, size = _crop_transform(circle, radius)
    canvas = _resample(image, transform, size)
    centre = (size // 2, size // 2)
    disk = cv2.circle(np.zeros((size, size), np.uint8), centre, int(radius * 0.98), 255, -1)
    grey = _grey(canvas)
    # Occluders (branches, a plane, the unlit side) are much darker than any
    # lit lunar terrain: fill them with the disk's level and keep detection
    # away from their edges, which are strong but match nothing.
    level = float(np.median(grey[disk > 0])) if np.any(disk) else 0.0
    dark = ((grey < OCCLUDER_FRACTION * level) & (disk > 0)).astype(np.uint8)
    if OCCLUDER_FRACTION > 0 and dark.any():
        grow = max(1, int(round(0.015 * radius)))
        dark = cv2.dilate(dark, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
        grey = np.where(dark > 0, np.float32(level), grey)
        disk = np.where(dark > 0, 0, disk).astype(np.uint8)
    weight = disk.astype(np.float32) / 255.0
    sigma = max(2.0, SHADING_SIGMA * radius)
    # Normalised convolution: local means over the disk only, so the black
    # sky does not bleed a bright ring into the limb.
    norm = _smooth(weight, sigma) + 1e-6
    low = _smooth(grey * weight, sigma) / norm
    detail = (grey - low) * weight
    spread = np.sqrt(_smooth(detail * detail, 2 * sigma) / norm) + 1e-3
    detail = detail / spread
    if DETAIL_SIGMA > 0:
        detail = cv2.GaussianBlur(detail, (0, 0), DETAIL_SIGMA)
    out = np.clip(128.0 + 40.0 * detail, 0, 255).astype(np.uint8)
    mask = cv2.circle(np.zeros((size, size), np.uint8), centre, int(radius * MASK_FRACTION), 255, -1)
    mask &= disk
    return out, mask, transform


_THREAD = threading.local()


def _detector(algorithm):
    # Detectors are reused per thread: BRISK builds its sampling pattern in
    # its constructor (~40 ms, as long as the rest of a registration), and
    # one instance per thread keeps concurrent requests apart.
    cache = _THREAD.__dict__.setdefault("detectors", {})
    key = (algorithm.name, algorithm.implementation, algorithm.create)
    if key not in cache:
        cache[key] = _new_detector(algorithm)
    return cache[key]


def _new_detector(algorithm):
    detector = algorithm.create()
    # One cap for every detector that takes one: ORB's default 500 is too few
    # once most matches are rejected, and uncapped SIFT/AKAZE make the
    # brute-force matching the slowest step.
    for setter in ("setMaxFeatures", "setNFeatures", "setMaxPoints"):
        if hasattr(detector, setter):
            getattr(detector, setter)(MAX_FEATURES)
    return detector


def _mutual_ratio_matches(desc_a, desc_b, norm):
    if desc_a is None or desc_b is None or len(desc_a) < 2 or len(desc_b) < 2:
        return np.empty((0, 2), int)
    matcher = cv2.BFMatcher(norm)
    forward = matcher.knnMatch(desc_a, desc_b, k=2)
    backward = matcher.knnMatch(desc_b, desc_a, k=1)
    best_back = np.full(len(desc_b), -1)
    for pair in backward:
        if pair:
            best_back[pair[0].queryIdx] = pair[0].trainIdx
    kept = [
        (pair[0].queryIdx, pair[0].trainIdx)
        for pair in forward
        if len(pair) == 2
        and pair[0].distance < RATIO * pair[1].distance
        and best_back[pair[0].trainIdx] == pair[0].queryIdx
    ]
    return np.array(kept, int).reshape(-1, 2)


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
    members = voting & (np.abs(((angles - (peak + 0.5) * ANGLE_BIN_DEG) + 180.0) % 360.0 - 180.0) < ANGLE_BIN_DEG * 1.5)
    rotation = float(np.degrees(np.angle(np.mean(np.exp(1j * np.radians(angles[members])))))) % 360.0
    off = np.abs((angles - rotation + 180.0) % 360.0 - 180.0)
    keep = radial & ((off < ANGLE_TOLERANCE_DEG) | ~voting)
    return keep


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


def register_disks(user, model, algorithm, user_circle, model_circle):
    """Register with the two disks given; see :func:`register_moon`."""
    # Never resample a photo's disk above its own resolution (no detail to
    # gain, only cost), but keep enough pixels for the detectors' patches.
    radius = int(round(min(WORK_RADIUS, max(MIN_WORK_RADIUS, user_circle.radius))))
    user_work, user_mask, user_to_work = normalise_disk(user, user_circle, radius)
    model_work, model_mask, model_to_work = normalise_disk(model, model_circle, radius)
    size = user_work.shape[0]
    centre = np.array([size / 2.0, size / 2.0])

    detector = _detector(algorithm)
    user_kp, user_desc = detector.detectAndCompute(user_work, user_mask)
    model_kp, model_desc = detector.detectAndCompute(model_work, model_mask)
    pairs = _mutual_ratio_matches(user_desc, model_desc, detector.defaultNorm())
    src = np.float32([user_kp[i].pt for i in pairs[:, 0]]).reshape(-1, 2)
    dst = np.float32([model_kp[j].pt for j in pairs[:, 1]]).reshape(-1, 2)
    matched = len(src)
    if matched:
        keep = _consistent(src, dst, centre, radius)
        src, dst = src[keep], dst[keep]
    if len(src) < MIN_MATCHES:
        raise NotEnoughKeypointsError()

    warp, inliers, estimator = _estimate(src, dst, centre, radius)
    if inliers.sum() < MIN_INLIERS or not _plausible(warp, centre, radius):
        raise HomographyNotFoundError()

    # Back to the server's convention: user pixels -> fitted model pixels.
    model_h, model_w = model.shape[:2]
    fit_w, fit_h = fitted_size(model_w, model_h, user.shape[1], user.shape[0])
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
    linear = warp[:2, :2]
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
            "reprojection_error_px": round(float(np.mean(error)), 3),
            "circles": {"user": user_circle.as_dict(), "model": fitted_circle.as_dict()},
            "estimator": estimator,
            "consistent_matches": int(len(src)),
            "rotation_deg": round(float(np.degrees(np.arctan2(linear[1, 0], linear[0, 0]))) % 360.0, 3),
            "disk_scale": round(float(np.sqrt(abs(np.linalg.det(linear)))), 4),
            "working_radius_px": radius,
        },
    )


def register_moon(user, model, algorithm):
    """Register a BGR user photo onto a BGR model render with ``algorithm``
    (an :class:`~moontrek.registration.algorithms.Algorithm`) by way of the
    Moon's disk in each. Raises NoMoonError when a disk is missing,
    NotEnoughKeypointsError or HomographyNotFoundError when no plausible
    answer is found."""
    circles = []
    for image, field in ((user, "user-file"), (model, "model-file")):
        try:
            circles.append(_find_moon_fast(image))
        except NoMoonError:
            # Say which image: the person can then fix the right one.
            raise NoMoonError(f"No Moon was found in the {field}.") from None
    return register_disks(user, model, algorithm, *circles)
