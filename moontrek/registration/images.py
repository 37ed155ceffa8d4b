"""Turning uploaded bytes into images the detectors can use."""

import cv2
import numpy as np

from .errors import ImageError, ImageTooLargeError
from .geometry import fitted_size
from .imageinfo import SUPPORTED_FORMATS, probe

__all__ = ["MIN_SIDE", "decode_image", "fit_model_to_user", "to_gray"]

# Below this no detector finds anything worth matching; saying so is kinder
# than a registration error about keypoints.
MIN_SIDE = 16


def decode_image(data, *, field="image", max_pixels=None, keep_alpha=False):
    """Decode an uploaded file into an 8-bit, 3-channel BGR image (4-channel
    BGRA with ``keep_alpha``, opaque where the file has no alpha: map layers).

    Accepts PNG, JPEG, WebP, TIFF and BMP with 1, 3 or 4 channels and 8 or
    16 bits. Transparent pixels are composited onto black, the colour of the
    sky around a render. JPEG photos are turned upright from their EXIF
    orientation, as a phone shows them. The pixel count is checked from the
    header, before any pixel memory is allocated.
    """
    if not data:
        raise ImageError(f"The {field} is empty.", field=field)
    kind, width, height = probe(data)
    if kind is None:
        raise ImageError(
            f"The {field} is not an image: expected {', '.join(SUPPORTED_FORMATS)}.", field=field
        )
    if width is None or height is None:
        raise ImageError(f"The {field} is a damaged {kind} file: its header cannot be read.", field=field)
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"The {field} has {width}x{height} = {width * height} pixels, "
            f"more than this server's limit of {max_pixels}.",
            field=field,
            pixels=width * height,
            limit=max_pixels,
        )
    if min(width, height) < MIN_SIDE:
        raise ImageError(
            f"The {field} is only {width}x{height} pixels; at least {MIN_SIDE}x{MIN_SIDE} are needed.", field=field
        )
    buffer = np.frombuffer(data, dtype=np.uint8)
    # Only IMREAD_COLOR applies the EXIF orientation; JPEG has no alpha or
    # 16-bit variant worth keeping, so that decode loses nothing there.
    flags = cv2.IMREAD_COLOR if kind == "JPEG" else cv2.IMREAD_UNCHANGED
    try:
        image = cv2.imdecode(buffer, flags)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise ImageError(f"The {field} is a damaged {kind} file: it cannot be decoded.", field=field)
    decoded_height, decoded_width = image.shape[:2]
    if decoded_width * decoded_height != width * height:
        # The header lied about the size (or a second frame differs): trust
        # nothing from this file.
        raise ImageError(f"The {field} is a damaged {kind} file: its size is inconsistent.", field=field)
    return _to_bgra8(image) if keep_alpha else _to_bgr8(image)


def _to_bgr8(image):
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        # Float (or 32-bit) images have no fixed white: stretch what is there.
        # NaN and infinities carry no brightness, so they become black first.
        image = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if channels == 4:
        alpha = image[:, :, 3:4].astype(np.uint16)
        return ((image[:, :, :3].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)
    return image


def _to_bgra8(image):
    """8-bit BGRA, the colours not composited: a layer's alpha is its own."""
    if image.ndim == 3 and image.shape[2] == 4:
        if image.dtype == np.uint8:
            return image
        alpha = image[:, :, 3]
        if alpha.dtype == np.uint16:
            alpha = (alpha >> 8).astype(np.uint8)
        elif alpha.dtype != np.uint8:
            alpha = (np.clip(np.nan_to_num(alpha.astype(np.float32)), 0.0, 1.0) * 255.0).astype(np.uint8)
        return np.dstack([_to_bgr8(image[:, :, :3]), alpha])
    return cv2.cvtColor(_to_bgr8(image), cv2.COLOR_BGR2BGRA)


def fit_model_to_user(model, user_shape):
    """Resize ``model`` to fit an image of ``user_shape`` (height, width, ...)
    with its aspect ratio kept: the frame the server's homographies land in."""
    user_height, user_width = user_shape[:2]
    model_height, model_width = model.shape[:2]
    width, height = fitted_size(model_width, model_height, user_width, user_height)
    if (width, height) == (model_width, model_height):
        return model
    return cv2.resize(model, (width, height), interpolation=cv2.INTER_AREA)


def to_gray(image):
    """Return an 8-bit single-channel version of a BGR (or grey) image."""
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
