"""Turning uploaded bytes into images the detectors can use."""

import io

import cv2
import numpy as np
import pillow_heif
from PIL import Image, ImageOps

from . import png
from .errors import ImageError, ImageTooLargeError
from .geometry import fitted_size
from .imageinfo import SUPPORTED_FORMATS, probe

__all__ = ["MIN_SIDE", "decode_image", "fit_model_to_user", "jpeg_reduction", "probe_image", "to_gray"]

# HEIC/HEIF through pillow-heif's Pillow plugin; AVIF through Pillow's own
# (pillow-heif's wheels carry no AV1 decoder). Registering twice is harmless.
pillow_heif.register_heif_opener()

# Below this no detector finds anything worth matching; saying so is kinder
# than a registration error about keypoints.
MIN_SIDE = 16


def probe_image(data, *, field="image", max_pixels=None):
    """Check an upload from its header alone and return ``(format, width, height)``.

    Raises ImageError when the bytes are no supported image, the header is
    unreadable or the image is too small, and ImageTooLargeError when it has
    more than ``max_pixels`` pixels: all before any pixel memory is allocated.
    ``width`` and ``height`` are the stored size, before any orientation.
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
    return kind, width, height


def decode_image(data, *, field="image", max_pixels=None, reduction=1, keep_alpha=False):
    """Decode an uploaded file into an 8-bit, 3-channel BGR image (4-channel
    BGRA with ``keep_alpha``, opaque where the file has no alpha: map layers).

    Accepts PNG, JPEG, HEIC/HEIF, AVIF, WebP, TIFF and BMP with 1, 3 or 4
    channels and 8 to 16 bits (HDR HEIC and AVIF come out as 8 bits).
    Transparent pixels are composited onto black, the colour of the sky
    around a render. Photos are turned upright from their orientation (EXIF,
    or HEIF's rotation and mirror), as a phone shows them. The pixel count is
    checked from the header, before any pixel memory is allocated.

    ``reduction`` (1, 2, 4 or 8) asks for a JPEG decoded at that fraction of
    its size by libjpeg's scaled inverse DCT, several times cheaper than a
    full decode; pixel ``(x, y)`` of the result covers full-size pixels
    ``[x * reduction, (x + 1) * reduction)``. Callers pick it with
    :func:`jpeg_reduction`, which only allows it where that mapping is exact;
    other formats ignore it.
    """
    kind, width, height = probe_image(data, field=field, max_pixels=max_pixels)
    finish = _to_bgra8 if keep_alpha else _to_bgr8
    if kind in ("HEIF", "AVIF"):
        return finish(_decode_with_pillow(data, kind, field))
    reduction = reduction if kind == "JPEG" else 1
    if reduction not in _REDUCED_FLAGS:
        raise ValueError(f"reduction must be one of {sorted(_REDUCED_FLAGS)}, not {reduction!r}")
    buffer = np.frombuffer(data, dtype=np.uint8)
    # Only the colour flags apply the EXIF orientation; JPEG has no alpha or
    # 16-bit variant worth keeping, so that decode loses nothing there.
    flags = _REDUCED_FLAGS[reduction] if kind == "JPEG" else cv2.IMREAD_UNCHANGED
    # The browser's PNGs (the client's renders and crops) have a faster
    # path; every other file, and any file that path declines, goes to OpenCV.
    rgb = png.decode(data) if kind == "PNG" else None
    if rgb is not None:
        return _from_rgb8(rgb, keep_alpha)
    try:
        image = cv2.imdecode(buffer, flags)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise ImageError(f"The {field} is a damaged {kind} file: it cannot be decoded.", field=field)
    decoded_height, decoded_width = image.shape[:2]
    expected = {(-(-width // reduction), -(-height // reduction)), (-(-height // reduction), -(-width // reduction))}
    if (decoded_width, decoded_height) not in expected:
        # The header lied about the size (or a second frame differs): trust
        # nothing from this file.
        raise ImageError(f"The {field} is a damaged {kind} file: its size is inconsistent.", field=field)
    return finish(image)


_REDUCED_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def jpeg_reduction(width, height, largest):
    """The largest JPEG reduction (1, 2, 4 or 8) at most ``largest`` that
    divides both sides: then the reduced pixel grid lines up with the full
    one whatever the orientation flips, and a homography found on the
    reduced image maps back exactly."""
    reduction = 1
    while reduction * 2 <= min(largest, 8) and width % (reduction * 2) == 0 and height % (reduction * 2) == 0:
        reduction *= 2
    return reduction


def _decode_with_pillow(data, kind, field):
    """HEIF (pillow-heif) and AVIF (Pillow's own plugin) as an RGB(A) or grey array, upright."""
    try:
        with Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[kind]]) as opened:
            # pillow-heif applies HEIF's rotation and mirror itself (and then
            # reports orientation 1); Pillow's AVIF plugin reports them as an
            # EXIF orientation: exif_transpose covers both.
            image = ImageOps.exif_transpose(opened)
            if image.mode not in ("RGB", "RGBA", "L"):
                image = image.convert("RGBA" if "A" in image.mode else "RGB")
            array = np.asarray(image)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"The {field} is a damaged {kind} file: {exc}", field=field) from None
    except (OSError, ValueError, SyntaxError, EOFError):
        raise ImageError(f"The {field} is a damaged {kind} file: it cannot be decoded.", field=field) from None
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA if array.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    return array


# Pillow's format names; pillow-heif registers "HEIF", Pillow itself "AVIF".
_PILLOW_FORMATS = {"HEIF": "HEIF", "AVIF": "AVIF"}


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
        return _onto_black(image, cv2.COLOR_BGRA2BGR)
    return image


def _from_rgb8(image, keep_alpha):
    """_to_bgr8 or _to_bgra8 of an 8-bit RGB(A) image in the file's channel
    order, converting in one pass (in place where the channels stay)."""
    if image.shape[2] == 4:
        if keep_alpha:
            return cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA, dst=image)
        return _onto_black(image, cv2.COLOR_RGBA2BGR)
    if keep_alpha:
        return cv2.cvtColor(image, cv2.COLOR_RGB2BGRA)
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR, dst=image)


def _onto_black(image, code):
    """A 4-channel ``image`` as 3-channel BGR (``code``: the cvtColor
    conversion from its channel order), composited onto black by its alpha.

    The alpha is read before the colour copy is made, and dropped when it is
    opaque everywhere (as renders' alpha usually is: nothing to composite),
    so at most the image and one copy are held. The composite, colour *
    alpha / 255 rounded, is cv2.multiply in 8 bits and in place: it rounds
    to nearest as (c * a + 127) // 255 does (c * a / 255 is never a half),
    at a tenth of the time of the same sum in 16-bit NumPy."""
    alpha = cv2.extractChannel(image, 3)
    if cv2.minMaxLoc(alpha)[0] == 255:
        alpha = None
    colour = cv2.cvtColor(image, code)
    if alpha is None:
        return colour
    return cv2.multiply(colour, cv2.cvtColor(alpha, cv2.COLOR_GRAY2BGR), dst=colour, scale=1.0 / 255.0)


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
