"""Errors the registration engine raises.

The engine knows nothing about HTTP: the web layer maps each class to a status.
Every message is a sentence a person can act on, because it reaches the user.
"""

__all__ = [
    "RegistrationError",
    "ImageError",
    "ImageTooLargeError",
    "UnknownAlgorithmError",
    "AlgorithmUnavailableError",
    "NotEnoughKeypointsError",
    "HomographyNotFoundError",
    "NoMoonError",
]


class RegistrationError(Exception):
    """Base class: registration could not produce an answer."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class ImageError(RegistrationError):
    """An input is not a decodable image (or is unusable as one)."""

    def __init__(self, message, *, field=None):
        super().__init__(message)
        self.field = field


class ImageTooLargeError(ImageError):
    """An image has more pixels than the configured limit."""

    def __init__(self, message, *, field=None, pixels=None, limit=None):
        super().__init__(message, field=field)
        self.pixels = pixels
        self.limit = limit


class UnknownAlgorithmError(RegistrationError):
    """The algorithm name is not one the engine knows."""


class AlgorithmUnavailableError(RegistrationError):
    """The algorithm is known but cannot run here (build or configuration)."""


class NotEnoughKeypointsError(RegistrationError):
    """Too few good matches to estimate a homography."""

    def __init__(self, message="No enough keypoints for finding homography matrix"):
        super().__init__(message)


class HomographyNotFoundError(RegistrationError):
    """The estimator found no (plausible) homography."""

    def __init__(self, message="Cannot find Homography Matrix"):
        super().__init__(message)


class NoMoonError(RegistrationError):
    """No Moon disk could be found in an image."""
