"""Geometry shared by the pipelines, the tests and the benchmarks.

The server's convention: a homography maps user-image pixels (x, y, 1) to
model-image pixels *after* the model has been resized to fit the user image
with its aspect ratio kept, the way MoonRegistration's ``sync_img_size`` does
(the Moon-Trek client draws its layers with that library, so it expects it).
"""

import numpy as np

__all__ = ["fitted_size", "scale_matrix", "corner_error", "map_points"]


def fitted_size(model_width, model_height, user_width, user_height):
    """Return (width, height) of the model once fitted to the user image.

    MoonRegistration v1.0.3's ``sync_img_size(primary=user, secondary=model)``:
    the model is fitted *inside* the photo with its aspect ratio kept. It takes
    the photo's width when its height then stays within the photo's height,
    else the photo's height; the other side is ``int(side * ratio)`` with the
    ratio in float32, as the C++ computes it. A model smaller than the photo
    is enlarged. A square render thus becomes ``min(w, h)`` on a side for any
    w x h photo, portrait or landscape.
    """
    # float32 throughout: the library's ratio is a C++ float, and its
    # truncation decides the last pixel of the fitted side.
    f32 = np.float32
    ratio = f32(user_width) / f32(model_width)
    if ratio * f32(model_height) <= f32(user_height):
        return int(user_width), int(f32(model_height) * ratio)
    ratio = f32(user_height) / f32(model_height)
    return int(f32(model_width) * ratio), int(user_height)


def scale_matrix(sx, sy=None):
    """Return the 3x3 homography that scales x by sx and y by sy."""
    sy = sx if sy is None else sy
    return np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]])


def map_points(homography, points):
    """Map an (N, 2) array of points through a 3x3 homography."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    ones = np.ones((len(points), 1))
    mapped = np.hstack([points, ones]) @ np.asarray(homography, dtype=np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return mapped[:, :2] / mapped[:, 2:3]


def corner_error(homography, reference, width, height):
    """Mean distance, in model pixels, between the user image's four corners
    mapped by ``homography`` and by ``reference``.

    This is the accuracy measure of ``../shared/data/registrate/reference.json``:
    it weighs the whole frame, not just where the features happened to be.
    """
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], float)
    diff = map_points(homography, corners) - map_points(reference, corners)
    error = float(np.mean(np.hypot(diff[:, 0], diff[:, 1])))
    return error if np.isfinite(error) else float("inf")
