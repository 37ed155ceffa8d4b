"""The HTTP resources. They read requests and write payloads; the work is
done by the collaborators passed in."""

import json
import logging
import math

import falcon

from . import __version__
from .registration.drawing import FORMATS, VIEWS
from .uploads import read_files

__all__ = ["RegistrarResource", "MoonDetectResource", "AlgorithmsResource", "HealthResource", "OverlayResource",
           "PageResource"]

registration_logger = logging.getLogger("moontrek.registration")

USER_FIELD = "user-file"
MODEL_FIELD = "model-file"
IMAGE_FIELD = "image-file"
LAYER_FIELD = "layer-file"
MAX_LAYERS = 8
IMAGE_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}


def success(resp, payload):
    resp.media = {"ok": True, "payload": payload, "status": 200}


class RegistrarResource:
    """``POST /api/registrar/{algorithm}``: the homography from the photo to
    the model render."""

    rate_limit_scope = "registrar"
    rate_limited_methods = ("POST",)

    def __init__(self, registrar, max_upload_bytes):
        self.registrar = registrar
        self.max_upload_bytes = max_upload_bytes

    def on_post(self, req, resp, algorithm):
        pipeline = req.get_param("pipeline")
        # Fail on the name before reading the body: an unknown algorithm
        # should not cost an upload's parse.
        self.registrar.check(algorithm, pipeline)
        files = read_files(req, (USER_FIELD, MODEL_FIELD), max_bytes=self.max_upload_bytes)
        result = self.registrar.register(files[USER_FIELD], files[MODEL_FIELD], algorithm, pipeline=pipeline)
        registration_logger.info(
            "registered %s (%s, %s pipeline): keypoints %d/%d, matches %d, inliers %d, %.1fms",
            result.algorithm,
            result.implementation,
            result.pipeline,
            result.keypoints_user,
            result.keypoints_model,
            result.matches,
            result.inliers,
            result.elapsed_ms,
        )
        success(resp, {"homography_matrix": result.homography_list(), **result.summary()})


class MoonDetectResource:
    """``POST /api/moon/detect``: the Moon's disk in a photo; the server
    fallback for the client's own detect_moon."""

    rate_limit_scope = "moon-detect"
    rate_limited_methods = ("POST",)

    def __init__(self, registrar, max_upload_bytes):
        self.registrar = registrar
        self.max_upload_bytes = max_upload_bytes

    def on_post(self, req, resp):
        files = read_files(req, (IMAGE_FIELD,), max_bytes=self.max_upload_bytes)
        circle = self.registrar.detect_moon(files[IMAGE_FIELD])
        success(resp, {"circle": circle.as_dict()})


class AlgorithmsResource:
    """``GET /api/registrar``: each algorithm and whether this server has it."""

    def __init__(self, registrar):
        self.registrar = registrar

    def on_get(self, req, resp):
        success(resp, {"algorithms": self.registrar.algorithms(), "pipelines": self.registrar.pipelines()})


class HealthResource:
    """``GET /api/health``: for load balancers; never rate limited."""

    def on_get(self, req, resp):
        success(resp, {"status": "ok", "version": __version__})


def _choice(req, name, choices):
    """A query value that must be one of ``choices`` (the first by default)."""
    value = req.get_param(name)
    if value is None:
        return choices[0]
    if value not in choices:
        raise falcon.HTTPBadRequest(
            title="Invalid query",
            description=f"The {name} must be one of {', '.join(choices)}, not {value[:40]!r}.",
        )
    return value


def _transparency(req):
    """The ``transparency`` query: one number from 0 to 1, or several
    separated by commas (or the parameter repeated), one per layer."""
    raw = req.get_param_as_list("transparency")
    if raw is None:
        return [1.0]
    values = []
    for text in (piece for item in raw for piece in item.split(",")):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 1.0:  # also refuses NaN
            raise falcon.HTTPBadRequest(
                title="Invalid query",
                description=(
                    "The transparency must be a number from 0 to 1, or one such number per layer separated "
                    f"by commas, not {','.join(raw)[:40]!r}."
                ),
            )
        values.append(value)
    return values


class OverlayResource:
    """``POST /api/overlay/{algorithm}``: register, then answer the map
    layers drawn over the photo (or the matches, or the blend) as an image.
    It spends the registrar's rate-limit budget: it is a registration."""

    rate_limit_scope = "registrar"
    rate_limited_methods = ("POST",)

    def __init__(self, registrar, max_upload_bytes):
        self.registrar = registrar
        self.max_upload_bytes = max_upload_bytes

    def on_post(self, req, resp, algorithm):
        pipeline = req.get_param("pipeline")
        view = _choice(req, "view", VIEWS)
        image_format = _choice(req, "format", tuple(FORMATS))
        transparency = _transparency(req)
        self.registrar.check(algorithm, pipeline)
        files = read_files(
            req, (USER_FIELD, MODEL_FIELD), max_bytes=self.max_upload_bytes, repeated={LAYER_FIELD: MAX_LAYERS}
        )
        layers = files[LAYER_FIELD]
        if len(transparency) not in (1, max(1, len(layers))):
            raise falcon.HTTPBadRequest(
                title="Invalid query",
                description=(
                    f"{len(transparency)} transparency values were given for {max(1, len(layers))} layer(s): "
                    "give one value, or one per layer."
                ),
            )
        result, image, drawing_ms = self.registrar.overlay(
            files[USER_FIELD], files[MODEL_FIELD], layers, algorithm, pipeline=pipeline, view=view,
            transparency=transparency, image_format=image_format,
        )
        registration_logger.info(
            "overlay %s (%s view, %d layers, %s pipeline): inliers %d, %.1fms + %.1fms drawing",
            result.algorithm, view, len(layers), result.pipeline, result.inliers, result.elapsed_ms, drawing_ms,
        )
        resp.content_type = IMAGE_TYPES[image_format]
        resp.data = image
        resp.set_header("X-Homography", json.dumps(result.homography_list()))
        # The quality fields, so that one request gives a page both the
        # picture and the numbers (one request: one unit of the budget).
        resp.set_header("X-Registration", json.dumps({**result.summary(), "drawing_ms": round(drawing_ms, 1)}))


class PageResource:
    """``GET /``: the page to try the overlay in a browser (its script and
    style are served from /static)."""

    def __init__(self, page_bytes):
        self.page = page_bytes

    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_HTML
        resp.data = self.page
