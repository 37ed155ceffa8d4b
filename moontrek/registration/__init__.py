"""Registration of Moon photos onto model renders, independent of HTTP."""

from .algorithms import ALGORITHM_NAMES, Algorithm, algorithm_table, get_algorithm
from .engine import DEFAULT_PIPELINE, PIPELINES, get_pipeline, register, register_images
from .errors import (
    AlgorithmUnavailableError,
    HomographyNotFoundError,
    ImageError,
    ImageTooLargeError,
    NoMoonError,
    NotEnoughKeypointsError,
    RegistrationError,
    UnknownAlgorithmError,
)
from .geometry import corner_error, fitted_size
from .images import decode_image, fit_model_to_user
from .result import RegistrationResult

__all__ = [
    "ALGORITHM_NAMES",
    "Algorithm",
    "algorithm_table",
    "get_algorithm",
    "DEFAULT_PIPELINE",
    "PIPELINES",
    "get_pipeline",
    "register",
    "register_images",
    "AlgorithmUnavailableError",
    "HomographyNotFoundError",
    "ImageError",
    "ImageTooLargeError",
    "NoMoonError",
    "NotEnoughKeypointsError",
    "RegistrationError",
    "UnknownAlgorithmError",
    "corner_error",
    "fitted_size",
    "decode_image",
    "fit_model_to_user",
    "RegistrationResult",
]
