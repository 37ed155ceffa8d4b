"""The HTTP resources. They read requests and write payloads; the work is
done by the collaborators passed in."""

import logging


from . import __version__
from .uploads import read_files

__all__ = ["RegistrarResource", "MoonDetectResource", "AlgorithmsResource", "HealthResource"]

registration_logger = logging.getLogger("moontrek.registration")

USER_FIELD = "user-file"
MODEL_FIELD = "model-file"
IMAGE_FIELD = "image-file"


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
