"""Showing a registration: map layers drawn over the photo, the inlier
matches side by side, and the photo blended over the model in red and green.

Every function takes a :class:`~moontrek.registration.result.RegistrationResult`
(or its homography) and decoded images (8-bit BGR or BGRA arrays, as
:func:`~moontrek.registration.images.decode_image` gives them) and returns an
8-bit BGR array; :func:`encode_image` turns that into PNG or JPEG bytes.

The homography maps photo pixels to pixels of the model fitted inside the
photo (:func:`~moontrek.registration.geometry.fitted_size`). A layer is an
image in the model render's frame (the client's map layers: 2000x2000 RGBA),
so a layer pixel reaches the photo by

    photo = inv(H) @ scale(fit_w / layer_w, fit_h / layer_h) @ layer

and it is drawn straight into the photo's own frame. MoonRegistration v1.0.3
warps the layer onto a canvas of the fitted model's size and centres that
canvas on the photo: on a non-square photo the layer then lands shifted by
half the size difference and clipped to a square. Not here.
"""

import cv2
import numpy as np

from .geometry import fitted_size, scale_matrix
from .images import fit_model_to_user, to_gray

__all__ = [
    "VIEWS",
    "FORMATS",
    "layer_to_photo",
    "draw_overlay",
    "draw_matches",
    "draw_blend",
    "draw_view",
    "encode_image",
]

#: The views :func:`draw_view` draws; the first is the default.
VIEWS = ("overlay", "matches", "blend")
#: Output formats and the extension OpenCV encodes them by.
FORMATS = {"png": ".png", "jpeg": ".jpg"}
JPEG_QUALITY = 90
# The overlay is composited this many photo rows at a time, so that a 50 Mpx
# photo needs a few MB of float working memory, not a few GB.
BAND_ROWS = 1024
# A layer shrunk by more than this is first resized with area averaging:
# bilinear warping alone skips source pixels and thin map lines break up.
AREA_RESIZE_BELOW = 0.75
# More matches than this are thinned evenly: a solid fan of lines shows nothing.
MAX_MATCH_LINES = 150


def _bgr(image):
    """8-bit BGR from grey, BGR or BGRA (alpha dropped: a photo is opaque)."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    return image


def layer_to_photo(homography, layer_shape, model_shape, photo_shape):
    """The 3x3 matrix taking layer pixels to photo pixels.

    ``homography`` maps photo pixels to fitted-model pixels; the layer is
    taken to cover the model render's frame (a layer of another size than the
    render is scaled onto it)."""
    photo_h, photo_w = photo_shape[:2]
    model_h, model_w = model_shape[:2]
    layer_h, layer_w = layer_shape[:2]
    fit_w, fit_h = fitted_size(model_w, model_h, photo_w, photo_h)
    layer_to_fitted = scale_matrix(fit_w / layer_w, fit_h / layer_h)
    return np.linalg.inv(np.asarray(homography, np.float64)) @ layer_to_fitted


def _premultiplied(layer):
    """The layer as premultiplied BGRA uint8, with the pixels the client's
    filter drops (transparent, or pure black 0xff000000) made fully
    transparent. Premultiplied so that interpolation at a layer's edges does
    not drag the dropped pixels' black into the colours."""
    if layer.ndim == 2:
        layer = cv2.cvtColor(layer, cv2.COLOR_GRAY2BGRA)
    elif layer.shape[2] == 3:
        layer = cv2.cvtColor(layer, cv2.COLOR_BGR2BGRA)
    # Per-channel OpenCV calls: NumPy's any() over the channel axis and a
    # 3-channel multiply with a scale were ten times slower on 2000x2000.
    blue, green, red, alpha = cv2.split(layer)
    coloured = cv2.compare(cv2.bitwise_or(cv2.bitwise_or(blue, green), red), 0, cv2.CMP_NE)
    alpha = cv2.bitwise_and(alpha, coloured)
    premultiplied = [cv2.multiply(channel, alpha, scale=1.0 / 255.0) for channel in (blue, green, red)]
    return cv2.merge([*premultiplied, alpha])


def _opacities(transparency, count=None):
    values = np.atleast_1d(np.asarray(transparency, dtype=np.float64))
    if values.ndim != 1 or not len(values) or not np.all(np.isfinite(values)):
        raise ValueError("transparency must be a number or a list of numbers from 0 to 1")
    if np.any((values < 0.0) | (values > 1.0)):
        raise ValueError(f"transparency must be from 0 to 1, not {values.tolist()}")
    if count is not None and len(values) not in (1, count):
        raise ValueError(f"{len(values)} transparency values for {count} layers: give one, or one per layer")
    return values


def draw_overlay(photo, model_shape, layers, homography, transparency=1.0):
    """The photo with ``layers`` drawn over it, in order, in the photo's frame.

    ``model_shape`` is the shape (height, width, ...) of the model render the
    homography was found against; each layer is in that render's frame. A
    layer pixel shows where its alpha is non-zero and it is not pure black;
    its opacity is its alpha times ``transparency`` (one value for every
    layer, or one per layer). Returns a BGR image of the photo's size.
    """
    count = len(layers) if hasattr(layers, "__len__") else None
    opacities = _opacities(transparency, count)
    out = _bgr(photo).copy()
    photo_h, photo_w = out.shape[:2]
    fit_w, fit_h = fitted_size(model_shape[1], model_shape[0], photo_w, photo_h)
    drawn = 0
    for index, layer in enumerate(layers):
        if len(opacities) > 1 and index >= len(opacities):
            raise ValueError(f"more layers than the {len(opacities)} transparency values")
        opacity = float(opacities[index if len(opacities) > 1 else 0])
        drawn += 1
        if opacity == 0.0:
            continue
        source = _premultiplied(layer)
        to_photo = layer_to_photo(homography, source.shape, model_shape, out.shape)
        layer_h, layer_w = source.shape[:2]
        if fit_w < AREA_RESIZE_BELOW * layer_w and fit_h < AREA_RESIZE_BELOW * layer_h:
            source = cv2.resize(source, (fit_w, fit_h), interpolation=cv2.INTER_AREA)
            sx, sy = layer_w / fit_w, layer_h / fit_h
            # Pixel centres: resized (i + 0.5) * s is the layer's i * s + (s - 1) / 2.
            to_photo = to_photo @ np.array([[sx, 0.0, (sx - 1) / 2], [0.0, sy, (sy - 1) / 2], [0.0, 0.0, 1.0]])
        _composite(out, source, to_photo, opacity)
    if len(opacities) > 1 and drawn != len(opacities):
        raise ValueError(f"{len(opacities)} transparency values for {drawn} layers: give one, or one per layer")
    return out


def _composite(out, source, to_photo, opacity):
    """Warp the premultiplied BGRA ``source`` by ``to_photo`` and composite it
    over ``out`` in place, band by band:
    out = out * (1 - opacity * alpha) + opacity * premultiplied colour.
    In 8-bit OpenCV arithmetic, one channel at a time (within one level of
    float arithmetic, and several times faster than NumPy on 12 Mpx)."""
    photo_h, photo_w = out.shape[:2]
    for top in range(0, photo_h, BAND_ROWS):
        rows = min(BAND_ROWS, photo_h - top)
        # The band's own origin: photo row `top` is band row 0.
        shift = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, -top], [0.0, 0.0, 1.0]])
        warped = cv2.warpPerspective(
            source, shift @ to_photo, (photo_w, rows), flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT, borderValue=0,
        )
        *colours, alpha = cv2.split(warped)
        if not cv2.countNonZero(alpha):
            continue
        keep = cv2.subtract(np.full_like(alpha, 255), cv2.convertScaleAbs(alpha, alpha=opacity))
        band = out[top:top + rows]
        mixed = [
            cv2.addWeighted(cv2.multiply(channel, keep, scale=1.0 / 255.0), 1.0, colour, opacity, 0.0)
            for channel, colour in zip(cv2.split(band), colours)
        ]
        band[:] = cv2.merge(mixed)


def _match_points(result):
    points = getattr(result, "inlier_points", None)
    if points is None:
        return np.empty((0, 2)), np.empty((0, 2))
    user, model = (np.asarray(p, np.float64).reshape(-1, 2) for p in points)
    if len(user) > MAX_MATCH_LINES:
        keep = np.linspace(0, len(user) - 1, MAX_MATCH_LINES).round().astype(int)
        user, model = user[keep], model[keep]
    return user, model


def draw_matches(photo, model, result):
    """The photo (left) and the model fitted to it (right, top-aligned) with
    a line for each inlier match of ``result``; photo_w + fit_w wide and the
    photo's height (the fitted model is never taller than the photo)."""
    photo = _bgr(photo)
    fitted = _bgr(fit_model_to_user(model, photo.shape))
    photo_h, photo_w = photo.shape[:2]
    fit_h, fit_w = fitted.shape[:2]
    canvas = np.zeros((max(photo_h, fit_h), photo_w + fit_w, 3), np.uint8)
    canvas[:photo_h, :photo_w] = photo
    canvas[:fit_h, photo_w:] = fitted
    thickness = max(1, int(round(max(photo_w, photo_h) / 700)))
    user_points, model_points = _match_points(result)
    shift = 16  # fixed-point bits: sub-pixel positions for cv2's drawing
    for index, (start, end) in enumerate(zip(user_points, model_points + [photo_w, 0])):
        hue = int(180 * index / max(1, len(user_points)))
        colour = cv2.cvtColor(np.uint8([[[hue, 255, 255]]]), cv2.COLOR_HSV2BGR)[0, 0].tolist()
        a = tuple(int(round(v * (1 << shift))) for v in start)
        b = tuple(int(round(v * (1 << shift))) for v in end)
        cv2.line(canvas, a, b, colour, thickness, cv2.LINE_AA, shift)
        for point in (a, b):
            cv2.circle(canvas, point, (2 * thickness + 1) << shift, colour, thickness, cv2.LINE_AA, shift)
    return canvas


def _stretched(grey):
    return cv2.normalize(grey, None, 0, 255, cv2.NORM_MINMAX)


def draw_blend(photo, model, homography):
    """The photo warped into the fitted model's frame over that model: the
    photo in red, the model in green, so aligned detail shows yellow and a
    misregistration as red and green fringes. The fitted model's size."""
    fitted = fit_model_to_user(model, photo.shape)
    fit_h, fit_w = fitted.shape[:2]
    warped = cv2.warpPerspective(
        to_gray(_bgr(photo)), np.asarray(homography, np.float64), (fit_w, fit_h), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )
    green = _stretched(to_gray(_bgr(fitted)))
    return cv2.merge([np.zeros_like(green), green, _stretched(warped)])


def draw_view(view, result, photo, model, layers=None, transparency=1.0):
    """Draw one of :data:`VIEWS` for ``result`` (photo -> fitted model).
    Without layers (None or an empty list) the overlay draws the model render
    itself, its black sky dropped by the black filter."""
    if view == "overlay":
        if layers is None or (isinstance(layers, (list, tuple)) and not layers):
            layers = [model]
        return draw_overlay(photo, model.shape, layers, result.homography, transparency)
    if view == "matches":
        return draw_matches(photo, model, result)
    if view == "blend":
        return draw_blend(photo, model, result.homography)
    raise ValueError(f"unknown view {view!r}: use one of {', '.join(VIEWS)}")


def encode_image(image, image_format="png"):
    """PNG or JPEG bytes of an 8-bit image."""
    if image_format not in FORMATS:
        raise ValueError(f"unknown format {image_format!r}: use one of {', '.join(FORMATS)}")
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if image_format == "jpeg" else []
    ok, buffer = cv2.imencode(FORMATS[image_format], image, params)
    if not ok:
        raise ValueError(f"the image could not be encoded as {image_format}")
    return buffer.tobytes()
