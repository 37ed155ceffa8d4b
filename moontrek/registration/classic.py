"""The original server's pipeline (MoonRegistration 1.0.3), kept selectable
so results stay comparable with the old numbers.

Model fitted to the user image, grey, detect and describe the whole frames,
brute-force 2-NN matching, 0.85 ratio test, keypoints kept within 0.9 of half
the width from each image's centre, RANSAC with a 5 px threshold.
"""

import cv2
import numpy as np

from .errors import HomographyNotFoundError, NotEnoughKeypointsError
from .geometry import fitted_size
from .images import MIN_SIDE, fit_model_to_user, to_gray
from .result import RegistrationResult

__all__ = ["register_classic", "ratio_matches"]

RATIO = 0.85
CENTRE_FRACTION = 0.9
RANSAC_THRESHOLD = 5.0


def ratio_matches(descriptors_a, descriptors_b, norm, ratio=RATIO):
    """Brute-force 2-NN matches of a against b that pass Lowe's ratio test."""
    if descriptors_a is None or descriptors_b is None or len(descriptors_a) == 0 or len(descriptors_b) < 2:
        return []
    matcher = cv2.BFMatcher(norm)
    pairs = matcher.knnMatch(descriptors_a, descriptors_b, k=2)
    return [pair[0] for pair in pairs if len(pair) == 2 and pair[0].distance < ratio * pair[1].distance]


def _near_centre(points, shape):
    height, width = shape[:2]
    centre = np.array([width / 2.0, height / 2.0])
    return np.hypot(*(points - centre).T) < CENTRE_FRACTION * width / 2.0


def register_classic(user, model, algorithm):
    """Register a BGR user image onto a BGR model image with ``algorithm``
    (an :class:`~moontrek.registration.algorithms.Algorithm`)."""
    fit_w, fit_h = fitted_size(model.shape[1], model.shape[0], user.shape[1], user.shape[0])
    if min(fit_w, fit_h) < MIN_SIDE:
        # A model far more elongated than the photo shrinks to a sliver no
        # detector can work on (BRISK's pyramid fails on a 5 px side).
        raise NotEnoughKeypointsError()
    model = fit_model_to_user(model, user.shape)
    user_gray, model_gray = to_gray(user), to_gray(model)
    detector = algorithm.create()
    user_kp, user_desc = detector.detectAndCompute(user_gray, None)
    model_kp, model_desc = detector.detectAndCompute(model_gray, None)
    matches = ratio_matches(user_desc, model_desc, detector.defaultNorm())

    if matches:
        src = np.float32([user_kp[m.queryIdx].pt for m in matches])
        dst = np.float32([model_kp[m.trainIdx].pt for m in matches])
        keep = _near_centre(src, user_gray.shape) & _near_centre(dst, model_gray.shape)
        src, dst = src[keep], dst[keep]
    else:
        src = dst = np.empty((0, 2), np.float32)
    if len(src) < 4:
        raise NotEnoughKeypointsError()

    homography, inlier_mask = cv2.findHomography(src, dst, cv2.RANSAC, RANSAC_THRESHOLD)
    if homography is None:
        raise HomographyNotFoundError()
    return RegistrationResult(
        homography=homography,
        algorithm=algorithm.name,
        implementation=algorithm.implementation,
        pipeline="classic",
        keypoints_user=len(user_kp),
        keypoints_model=len(model_kp),
        matches=int(len(src)),
        inliers=int(inlier_mask.sum()) if inlier_mask is not None else 0,
        inlier_points=None if inlier_mask is None else (src[inlier_mask.ravel() > 0], dst[inlier_mask.ravel() > 0]),
    )
