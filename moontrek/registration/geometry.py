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

    The model's longer side is set to the user's longer side when both images
    have the same orientation (landscape means strictly wider than tall), and
    to the user's shorter side otherwise. The other side follows the aspect
    ratio, truncated. A model already no larger than that is left as it is:
    the library never enlarges it.
    """
    user_landscape = user_width > user_height
    model_landscape = model_width > model_height
    if user_landscape == model_landscape:
        longer = max(user_width, user_height)
    else:
        longer = min(user_width, user_height)
    if model_height > model_width and model_height > longer:
        ratio = longer / model_height
        return int(model_width * ratio), longer
    if model_width >= model_height and model_width > longer:
        ratio = longer / model_width
        return longer, int(model_height * ratio)
    return model_width, model_height


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
