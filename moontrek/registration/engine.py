"""The engine's front door: bytes (or arrays) in, a homography out."""

import time

from .algorithms import get_algorithm
from .classic import register_classic
from .errors import RegistrationError
from .images import decode_image
from .moon_pipeline import register_moon

__all__ = ["PIPELINES", "DEFAULT_PIPELINE", "get_pipeline", "register", "register_images"]

PIPELINES = {"classic": register_classic, "moon": register_moon}
DEFAULT_PIPELINE = "moon"


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


def register(user_bytes, model_bytes, algorithm, *, pipeline=None, surf_enabled=True, max_pixels=None):
    """Find the homography from the user photo to the model render.

    ``user_bytes`` and ``model_bytes`` are encoded image files. The result's
    homography maps user pixels to pixels of the model resized to fit the user
    image with its aspect ratio kept. Raises a
    :class:`~moontrek.registration.errors.RegistrationError` subclass whose
    message can be shown to a person.
    """
    started = time.perf_counter()
    # Resolve the algorithm first: an unknown name should not cost a decode.
    get_algorithm(algorithm, surf_enabled=surf_enabled)
    get_pipeline(pipeline)
    user = decode_image(user_bytes, field="user-file", max_pixels=max_pixels)
    model = decode_image(model_bytes, field="model-file", max_pixels=max_pixels)
    result = register_images(user, model, algorithm, pipeline=pipeline, surf_enabled=surf_enabled)
    result.elapsed_ms = (time.perf_counter() - started) * 1000.0
    return result
