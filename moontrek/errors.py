"""Every failure, expected or not, rendered as the JSON error envelope:
``{"ok": false, "status": <HTTP status>, "error": "<a sentence>"}``.
"""

import logging

import falcon

from .registration import (
    AlgorithmUnavailableError,
    ImageError,
    ImageTooLargeError,
    NoMoonError,
    RegistrationError,
    UnknownAlgorithmError,
)

__all__ = ["REGISTRATION_FAILED", "http_error_for", "handle_error", "envelope_error"]

logger = logging.getLogger("moontrek.errors")

# The images were read but no homography could be trusted: the request was
# well-formed yet cannot be processed, which is what 422 says.
REGISTRATION_FAILED = falcon.HTTP_422

# Engine error -> (status, title). Order matters: subclasses first.
_ENGINE_STATUS = (
    (ImageTooLargeError, falcon.HTTP_413, "Image too large"),
    (ImageError, falcon.HTTP_400, "Invalid image"),
    (UnknownAlgorithmError, falcon.HTTP_404, "Unknown algorithm"),
    (AlgorithmUnavailableError, falcon.HTTP_501, "Algorithm unavailable"),
    (NoMoonError, REGISTRATION_FAILED, "No Moon found"),
    (RegistrationError, REGISTRATION_FAILED, "Registration failed"),
)

# Sentences for errors Falcon raises on its own with no description.
_DEFAULT_SENTENCES = {
    404: "There is nothing at {path}.",
    405: "The {method} method is not allowed on {path}.",
    413: "The request body is too large.",
    415: "The request body's content type is not supported here.",
}


def http_error_for(exc):
    """The Falcon error that answers an engine error."""
    for cls, status, title in _ENGINE_STATUS:
        if isinstance(exc, cls):
            return falcon.HTTPError(status, title=title, description=exc.message)
    raise TypeError(f"not a registration error: {exc!r}")


def envelope_error(req, resp, status, message, headers=None):
    """Write the error envelope onto ``resp``; the request log line will carry
    the message, so one line says what went wrong."""
    req.context.error_message = message
    resp.status = status
    code = falcon.http_status_to_code(status)
    resp.media = {"ok": False, "status": code, "error": message}
    if headers:
        resp.set_headers(headers)


def handle_error(req, resp, ex, params):
    """The one error handler: HTTP errors, engine errors and anything else."""
    if isinstance(ex, RegistrationError):
        ex = http_error_for(ex)
    if isinstance(ex, falcon.HTTPError):
        code = ex.status_code
        message = ex.description
        if not message:
            template = _DEFAULT_SENTENCES.get(code)
            message = template.format(path=req.path, method=req.method) if template else ex.title
        if code == 405 and ex.headers and "Allow" in ex.headers:
            message = f"{message[:-1]}; allowed: {ex.headers['Allow']}."
        envelope_error(req, resp, ex.status, message, ex.headers)
        return
    logger.exception("unexpected error on %s %s", req.method, req.path)
    envelope_error(req, resp, falcon.HTTP_500, "The server hit an unexpected error; it has been logged.")
