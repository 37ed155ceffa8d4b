"""The engine's front door: bytes (or arrays) in, a homography out."""

import contextlib
import dataclasses
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .algorithms import get_algorithm
from .classic import register_classic
from .errors import NoMoonError, RegistrationError
from .geometry import fitted_size
from .images import decode_image, jpeg_reduction, probe_image
from .moon import find_moon
from .moon_pipeline import ALGORITHM_SETTINGS, WORK_RADIUS, prepare_side, register_moon, register_sides

__all__ = ["PIPELINES", "DEFAULT_PIPELINE", "get_pipeline", "register", "register_images"]

PIPELINES = {"classic": register_classic, "moon": register_moon}
DEFAULT_PIPELINE = "moon"

# A JPEG photo is decoded smaller only when its Moon keeps this much more
# than the pipeline's working radius: the pipeline then resamples from the
# same number of pixels per crater it would take from the full image (its
# pyramid halves the photo just as far), and a disk measured a few percent
# large on the small probe costs no detail.
REDUCTION_MARGIN = 1.15


def get_pipeline(name):
    """The pipeline function called ``name`` (case-insensitive; None: the
    default); raise RegistrationError naming the valid ones."""
    key = (name or DEFAULT_PIPELINE).strip().lower()
    if key not in PIPELINES:
        raise RegistrationError(f"Unknown pipeline {str(name)[:40]!r}: use one of {', '.join(sorted(PIPELINES))}.")
    return PIPELINES[key]


def register_images(user, model, algorithm, *, pipeline=None, surf_enabled=True):
    """Register decoded BGR images; see :func:`register`."""
    started = time.perf_counter()
    run = get_pipeline(pipeline)
    result = run(user, model, get_algorithm(algorithm, surf_enabled=surf_enabled))
    result.elapsed_ms = (time.perf_counter() - started) * 1000.0
    return result


def register(
    user_bytes,
    model_bytes,
    algorithm,
    *,
    pipeline=None,
    surf_enabled=True,
    max_pixels=None,
    reduced_decode=False,
    parallel=True,
):
    """Find the homography from the user photo to the model render.

    ``user_bytes`` and ``model_bytes`` are encoded image files. The result's
    homography maps user pixels to pixels of the model resized to fit the user
    image with its aspect ratio kept. Raises a
    :class:`~moontrek.registration.errors.RegistrationError` subclass whose
    message can be shown to a person.

    With ``reduced_decode`` (the server's default) the ``moon`` pipeline
    decodes a large JPEG photo at 1/2, 1/4 or 1/8 of its size when its Moon
    is large enough to lose nothing the pipeline uses (see
    :func:`_decode_user`); the answer stays in full-resolution pixels.

    With ``parallel`` (the default) a registration that runs alone in this
    process prepares the model on a second thread while this one prepares
    the photo (see :func:`_register_moon_files`); under load, or without it,
    everything runs on the calling thread.
    """
    started = time.perf_counter()
    # Resolve the algorithm first: an unknown name should not cost a decode.
    found = get_algorithm(algorithm, surf_enabled=surf_enabled)
    run = get_pipeline(pipeline)
    with _registration():
        if run is register_moon:
            result, user_shape, model_shape, reduction = _register_moon_files(
                user_bytes, model_bytes, found, max_pixels, reduced_decode, parallel
            )
        else:
            # The classic pipeline keeps the original's full-size frames.
            user, model = _decode_pair(user_bytes, model_bytes, max_pixels, parallel)
            result = register_images(user, model, algorithm, pipeline=pipeline, surf_enabled=surf_enabled)
            user_shape, model_shape, reduction = user.shape, model.shape, 1
    if reduction > 1:
        result = _to_full_resolution(result, reduction, user_shape, model_shape)
    result.elapsed_ms = (time.perf_counter() - started) * 1000.0
    return result


# --- Decoding both files, concurrently when the machine is free. ------------

# OpenCV's and Pillow's decoders release the GIL, so the two files of one
# request decode in parallel. Only when that request runs alone: under load
# the other requests already fill the cores, and a second thread per
# request would only add switching (and the peak memory of two decodes of
# different requests at once).
_POOL = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="moontrek-decode")
_ACTIVE = 0
_ACTIVE_LOCK = threading.Lock()


@contextlib.contextmanager
def _registration():
    global _ACTIVE
    with _ACTIVE_LOCK:
        _ACTIVE += 1
    try:
        yield
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE -= 1


def _alone():
    with _ACTIVE_LOCK:
        return _ACTIVE <= 1 and (os.cpu_count() or 1) > 1


def _register_moon_files(user_bytes, model_bytes, algorithm, max_pixels, reduce, parallel):
    """(result, user shape, model shape, user reduction) of the moon
    pipeline on encoded files.

    Each image's side (decoding, its disk, and its described canvas where
    the working radius is known beforehand) needs nothing of the other's,
    so when the request runs alone the model's is prepared on the pool
    while this thread prepares the photo's: the request then takes about
    the longer of the two, not their sum."""
    _probe_pair(user_bytes, model_bytes, max_pixels)

    def model_side():
        model = decode_image(model_bytes, field="model-file", max_pixels=max_pixels)
        return prepare_side(model, algorithm, render=True)

    def user_side():
        user, reduction = _decode_user(user_bytes, algorithm.name, max_pixels, reduce)
        return prepare_side(user, algorithm), reduction

    if parallel and _alone():
        (user, reduction), model = _both(user_side, model_side)
    else:
        (user, reduction), model = user_side(), model_side()
    return register_sides(user, model, algorithm), user.shape, model.shape, reduction


def _probe_pair(user_bytes, model_bytes, max_pixels):
    # Both headers first: a bad or oversized file is refused before any
    # pixel is decoded, the photo's error before the model's.
    probe_image(user_bytes, field="user-file", max_pixels=max_pixels)
    probe_image(model_bytes, field="model-file", max_pixels=max_pixels)


def _both(first, second):
    """(first(), second()), ``second`` run on the pool meanwhile. An error
    of ``first`` wins (the photo's before the model's) and never leaves
    ``second`` running past the request."""
    pending = _POOL.submit(second)
    try:
        value = first()
    except BaseException:
        pending.cancel()
        with contextlib.suppress(Exception):
            pending.result()
        raise
    return value, pending.result()


def _decode_pair(user_bytes, model_bytes, max_pixels, parallel):
    """(user, model) at full size: the model decoded on the pool while this
    thread decodes the photo, when this is the only registration running."""
    _probe_pair(user_bytes, model_bytes, max_pixels)
    decode_model = lambda: decode_image(model_bytes, field="model-file", max_pixels=max_pixels)  # noqa: E731
    decode_user = lambda: decode_image(user_bytes, field="user-file", max_pixels=max_pixels)  # noqa: E731
    if parallel and _alone():
        return _both(decode_user, decode_model)
    return decode_user(), decode_model()


def _decode_user(data, algorithm, max_pixels, reduce):
    """The photo, and the JPEG reduction it was decoded at.

    The header alone cannot say how large the Moon is (a whole phone photo
    may hold a Moon a tenth of its short side across, whose every pixel
    counts), so a large JPEG is first decoded at 1/8 (libjpeg skips most of
    the inverse DCT: about a fifth of a full decode of a 12 Mpx photo) and
    its disk found there; the photo is then decoded at the largest
    reduction that keeps the disk's radius ``REDUCTION_MARGIN`` times the
    working radius (the 1/8 copy itself when it does), else at full size.
    """
    kind, width, height = probe_image(data, field="user-file", max_pixels=max_pixels)
    working = ALGORITHM_SETTINGS.get(algorithm, {}).get("radius", WORK_RADIUS)
    # No disk inside the frame can have a radius over half the short side.
    most = jpeg_reduction(width, height, int(min(width, height) / 2 / (working * REDUCTION_MARGIN)))
    if not reduce or kind != "JPEG" or most < 2:
        return decode_image(data, field="user-file", max_pixels=max_pixels), 1
    small = decode_image(data, field="user-file", max_pixels=max_pixels, reduction=most)
    try:
        radius = find_moon(small).radius * most
    except NoMoonError:
        radius = 0.0
    reduction = most
    while reduction > 1 and radius / reduction < working * REDUCTION_MARGIN:
        reduction //= 2
    if reduction == most:
        return small, most
    del small
    return decode_image(data, field="user-file", max_pixels=max_pixels, reduction=reduction), reduction


def _to_full_resolution(result, reduction, user_shape, model_shape):
    """A result found on a photo decoded at 1/``reduction``, in the pixels of
    the full photo and of the model fitted to it (the server's convention).

    Full photo pixel x covers reduced pixel (x + 0.5) / reduction - 0.5; the
    model fitted to the reduced photo and the one fitted to the full photo
    are both plain rescalings of the render."""
    model_h, model_w = model_shape[:2]
    small_h, small_w = user_shape[:2]
    full_w, full_h = small_w * reduction, small_h * reduction
    small_fit = fitted_size(model_w, model_h, small_w, small_h)
    full_fit = fitted_size(model_w, model_h, full_w, full_h)
    gx, gy = full_fit[0] / small_fit[0], full_fit[1] / small_fit[1]
    s = 1.0 / reduction
    to_small = np.array([[s, 0.0, 0.5 * s - 0.5], [0.0, s, 0.5 * s - 0.5], [0.0, 0.0, 1.0]])
    homography = np.diag([gx, gy, 1.0]) @ np.asarray(result.homography, float) @ to_small
    extras = dict(result.extras)
    circles = extras.get("circles")
    if circles:
        user, model = circles.get("user"), circles.get("model")
        extras["circles"] = {
            **circles,
            "user": user and _circle((user["x"] + 0.5) * reduction - 0.5, (user["y"] + 0.5) * reduction - 0.5,
                                     user["radius"] * reduction),
            "model": model and _circle(model["x"] * gx, model["y"] * gy, model["radius"] * np.sqrt(gx * gy)),
        }
    if "reprojection_error_px" in extras:
        extras["reprojection_error_px"] = round(float(extras["reprojection_error_px"]) * np.sqrt(gx * gy), 3)
    extras["decoded_reduction"] = reduction
    points = result.inlier_points
    if points is not None:
        # Drawn by the matches view: in the same frames as the homography.
        user_points, model_points = (np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in points)
        points = ((user_points + 0.5) * reduction - 0.5, model_points * np.array([gx, gy]))
    return dataclasses.replace(
        result, homography=homography / homography[2, 2], extras=extras, inlier_points=points
    )


def _circle(x, y, radius):
    return {"x": round(float(x), 1), "y": round(float(y), 1), "radius": round(float(radius), 1)}
