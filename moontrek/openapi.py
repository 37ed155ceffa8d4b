"""The OpenAPI 3 document of the HTTP API, served at GET /api/openapi.json.

The document is built from small helpers so that each route states only what
is particular to it: its parameters, its upload fields, its success payload
and which error statuses it can answer. Everything shared (the envelopes, the
error responses, the rate-limit headers) lives once in ``components``.
"""

from . import __version__
from .registration import ALGORITHM_NAMES
from .registration.drawing import FORMATS, VIEWS

__all__ = ["build_document", "OpenAPIResource", "ERROR_STATUSES"]

JSON = "application/json"
MULTIPART = "multipart/form-data"
HTML = "text/html"
IMAGE_TYPES = ("image/png", "image/jpeg")
MAX_LAYERS = 8

#: Every error status the API answers, with its component name and when.
ERROR_STATUSES = {
    400: ("BadRequest", "A file field is missing, empty, sent twice or not a decodable image; "
          "or the multipart body is malformed; or (overlay) a bad transparency, format or view value, "
          "or more than 8 layer-file parts."),
    404: ("NotFound", "Unknown algorithm (the message lists the valid ones), or nothing at this path."),
    405: ("MethodNotAllowed", "The method is not allowed on this path; the Allow header says which are."),
    413: ("ContentTooLarge", "The body is over the server's upload limit, or an image has more pixels "
          "than its limit (the message gives both)."),
    415: ("UnsupportedMediaType", "The body is not multipart/form-data."),
    422: ("UnprocessableContent", "The request was understood but cannot be answered: registration "
          "impossible, no Moon found, or an unknown pipeline."),
    429: ("TooManyRequests", "Over the rate limit; Retry-After says when to come back."),
    500: ("InternalServerError", "Anything unexpected; the details go to the server's log."),
    501: ("NotImplemented", "The algorithm is known but not served by this server; the message says why."),
    503: ("ServiceUnavailable", "Every registration slot stayed busy, or the rate-limit storage is down "
          "and the server fails closed; Retry-After says when to come back."),
}

RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": "Requests allowed in the tightest window.",
    "X-RateLimit-Remaining": "Requests left in that window.",
    "X-RateLimit-Reset": "When that window resets, in epoch seconds.",
}
RETRY_AFTER = "Retry-After"

# Statuses every upload route can answer, beside its own.
UPLOAD_ERRORS = (400, 405, 413, 415, 429, 500, 503)


# -- small builders -----------------------------------------------------------


def ref(kind, name):
    return {"$ref": f"#/components/{kind}/{name}"}


def schema_ref(name):
    return ref("schemas", name)


def obj(properties, required=None, *, additional=True, description=None):
    """An object schema; ``required`` defaults to every property."""
    schema = {
        "type": "object",
        "required": list(properties if required is None else required),
        "properties": properties,
        "additionalProperties": additional,
    }
    if description:
        schema["description"] = description
    return schema


def integer(minimum=None, description=None):
    schema = {"type": "integer"}
    if minimum is not None:
        schema["minimum"] = minimum
    if description:
        schema["description"] = description
    return schema


def number(description=None):
    return {"type": "number", "description": description} if description else {"type": "number"}


def string(description=None, **extra):
    schema = {"type": "string", **extra}
    if description:
        schema["description"] = description
    return schema


def array(items, size=None):
    schema = {"type": "array", "items": items}
    if size is not None:
        schema["minItems"] = schema["maxItems"] = size
    return schema


def json_content(schema):
    return {JSON: {"schema": schema}}


def header(description, required=False):
    """A header whose value is a non-negative integer written as a string."""
    return {
        "description": description,
        "required": required,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }


def success_envelope(payload):
    return obj(
        {"ok": {"type": "boolean", "enum": [True]}, "status": {"type": "integer", "enum": [200]}, "payload": payload},
        additional=False,
        description="The success envelope.",
    )


def error_response(code, description):
    """A component response: the error envelope with ``status`` equal to ``code``."""
    headers = {name: ref("headers", name) for name in RATE_LIMIT_HEADERS}
    if code == 429:
        # The limiter's refusal always says where the client stands.
        headers = {name: header(text, required=True) for name, text in RATE_LIMIT_HEADERS.items()}
    if code in (429, 503):
        headers[RETRY_AFTER] = header("Seconds until a request may succeed.", required=True)
    if code == 405:
        headers["Allow"] = {"description": "The methods this path allows.", "required": True,
                            "schema": {"type": "string"}}
    schema = {"allOf": [schema_ref("ErrorEnvelope"), {"type": "object", "properties": {"status": {"enum": [code]}}}]}
    return {"description": description, "headers": headers, "content": json_content(schema)}


def success_response(description, envelope, *, rate_limited=False):
    response = {"description": description, "content": json_content(schema_ref(envelope))}
    if rate_limited:
        response["headers"] = {name: ref("headers", name) for name in RATE_LIMIT_HEADERS}
    return response


def responses(success, *codes):
    answers = {"200": success}
    for code in sorted(codes):
        answers[str(code)] = ref("responses", ERROR_STATUSES[code][0])
    return answers


def upload_body(*fields):
    """A multipart/form-data body whose ``fields`` are all required files."""
    properties = {name: string(description, format="binary") for name, description in fields}
    return {
        "required": True,
        "content": {MULTIPART: {"schema": obj(properties)}},
    }


def operation(operation_id, summary, tags, answers, *, description=None, parameters=None, body=None):
    op = {"operationId": operation_id, "summary": summary, "tags": tags, "responses": answers}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = body
    return op


# -- the components -----------------------------------------------------------


def schemas():
    return {
        "ErrorEnvelope": obj(
            {
                "ok": {"type": "boolean", "enum": [False]},
                "status": integer(400, "The HTTP status, the same as the response's."),
                "error": string("A sentence saying what went wrong and, where it can, what to do."),
            },
            additional=False,
            description="Every failure: the same HTTP status in the header and the body.",
        ),
        "Homography": {
            **array(array(number(), 3), 3),
            "description": "Maps user-image pixels (x, y, 1) to model-image pixels after the model has been "
            "fitted inside the user image with its aspect ratio kept, as MoonRegistration v1.0.3's sync_img_size "
            "does (by the photo's width unless the height would overflow, else by its height; enlarged when the "
            "photo is larger): a square render becomes min(w, h) on a side for a w x h photo.",
        },
        "KeypointCounts": obj({"user": integer(0), "model": integer(0)}, additional=False),
        "Registration": obj(
            {
                "homography_matrix": schema_ref("Homography"),
                "algorithm": string(enum=list(ALGORITHM_NAMES)),
                "implementation": string("Which implementation served the algorithm."),
                "pipeline": string(),
                "keypoints": schema_ref("KeypointCounts"),
                "matches": integer(0),
                "inliers": integer(0),
                "inlier_ratio": {"type": "number", "minimum": 0, "maximum": 1},
                "elapsed_ms": {"type": "number", "minimum": 0},
            },
            description="The homography and how it was found; further informative keys may appear.",
        ),
        "Algorithm": obj(
            {
                "name": string(enum=list(ALGORITHM_NAMES)),
                "available": {"type": "boolean"},
                "implementation": string("Which implementation serves it.", nullable=True),
                "reason": string("Why it is not available (only when it is not)."),
            },
            required=["name", "available", "implementation"],
        ),
        "Pipelines": obj({"available": array(string()), "default": string()}),
        "AlgorithmList": obj({"algorithms": array(schema_ref("Algorithm")), "pipelines": schema_ref("Pipelines")}),
        "Health": obj({"status": string(enum=["ok"]), "version": string()}),
        "Circle": obj(
            {"x": number("Centre, pixels from the left."), "y": number("Centre, pixels from the top."),
             "radius": {"type": "number", "minimum": 0}},
            additional=False,
        ),
        "MoonDetection": obj({"circle": schema_ref("Circle")}, description="The Moon's disk in the image's pixels."),
        "RegistrationEnvelope": success_envelope(schema_ref("Registration")),
        "AlgorithmListEnvelope": success_envelope(schema_ref("AlgorithmList")),
        "HealthEnvelope": success_envelope(schema_ref("Health")),
        "MoonDetectionEnvelope": success_envelope(schema_ref("MoonDetection")),
    }


def components():
    headers = {name: header(text) for name, text in RATE_LIMIT_HEADERS.items()}
    headers[RETRY_AFTER] = header("Seconds until a request may succeed.")
    return {
        "schemas": schemas(),
        "responses": {name: error_response(code, text) for code, (name, text) in ERROR_STATUSES.items()},
        "headers": headers,
    }


# -- the paths ------------------------------------------------------------------


def prefixed_paths(prefix):
    """The routes served under both /api and /pyapi (the path the deployed
    Moon-Trek client uses): the same operations, sharing one rate-limit budget."""
    tag = [prefix.strip("/")]
    name = prefix.strip("/").capitalize()
    alias = "" if prefix == "/api" else " The same as the /api route, sharing its rate-limit budget."
    algorithm = {
        "name": "algorithm",
        "in": "path",
        "required": True,
        "description": f"One of {', '.join(ALGORITHM_NAMES)}, in any case; anything else is a 404.",
        "schema": {"type": "string", "minLength": 1},
        "example": "SIFT",
    }
    pipeline = {
        "name": "pipeline",
        "in": "query",
        "required": False,
        "description": "The registration pipeline (see GET /api/registrar); unknown names are a 422.",
        "schema": {"type": "string"},
        "example": "classic",
    }
    register = operation(
        f"register{name}",
        "Register a Moon photo onto a model render",
        tag,
        responses(
            success_response("The homography.", "RegistrationEnvelope", rate_limited=True),
            404, 422, 501, *UPLOAD_ERRORS,
        ),
        description="The homography from the photo (user-file) to the model render (model-file). Rate limited."
        + alias,
        parameters=[algorithm, pipeline],
        body=upload_body(("user-file", "The photo."), ("model-file", "The model render.")),
    )
    list_algorithms = operation(
        f"listAlgorithms{name}",
        "The algorithms and pipelines this server serves",
        tag,
        responses(success_response("The algorithm list.", "AlgorithmListEnvelope"), 500),
        description="Each algorithm, whether this build serves it (and why not) and which implementation does;"
        " the pipelines." + alias,
    )
    detect = operation(
        f"detectMoon{name}",
        "Find the Moon's disk in an image",
        tag,
        responses(success_response("The Moon's disk.", "MoonDetectionEnvelope", rate_limited=True), 422,
                  *UPLOAD_ERRORS),
        description="The circle of the Moon in image-file, in that image's pixels, fitted to its lit limb;"
        " 422 when there is no Moon. Rate limited." + alias,
        body=upload_body(("image-file", "The photo or render.")),
    )
    return {
        f"{prefix}/registrar/{{algorithm}}": {"post": register},
        f"{prefix}/registrar": {"get": list_algorithms},
        f"{prefix}/moon/detect": {"post": detect},
        f"{prefix}/overlay/{{algorithm}}": {"post": overlay_operation(name, tag, alias, algorithm, pipeline)},
    }


def overlay_operation(name, tag, alias, algorithm, pipeline):
    """``POST {prefix}/overlay/{algorithm}``: the registration drawn, as an
    image; failures are the same JSON envelopes as the registrar's."""
    transparency = {
        "name": "transparency",
        "in": "query",
        "required": False,
        "description": "Opacity of the layers, 0 to 1 (default 1): one value for every layer, or one per layer "
        "separated by commas.",
        "schema": {"type": "string", "pattern": r"^\s*[0-9.]+\s*(,\s*[0-9.]+\s*)*$"},
        "example": "0.8",
    }
    image_format = {"name": "format", "in": "query", "required": False, "description": "The image's format.",
                    "schema": string(enum=list(FORMATS), default="png")}
    view = {
        "name": "view",
        "in": "query",
        "required": False,
        "description": "overlay: the layers over the photo, the photo's size; matches: photo and fitted model side "
        "by side with the inlier matches; blend: the photo warped over the fitted model, red and green, the "
        "fitted model's size.",
        "schema": string(enum=list(VIEWS), default=VIEWS[0]),
    }
    binary = string(format="binary")
    image = {
        "description": "The drawing; the homography and the quality fields are in the headers.",
        "headers": {
            "X-Homography": {"description": "The homography (photo pixels to fitted-model pixels), a 3x3 JSON array.",
                             "required": True, "schema": {"type": "string"}},
            "X-Registration": {"description": "The registration's quality fields as a JSON object: those of the "
                               "registrar's payload, and drawing_ms.", "required": True, "schema": {"type": "string"}},
            **{name: ref("headers", name) for name in RATE_LIMIT_HEADERS},
        },
        "content": {media: {"schema": binary} for media in IMAGE_TYPES},
    }
    body = {
        "required": True,
        "content": {MULTIPART: {"schema": obj(
            {
                "user-file": string("The photo.", format="binary"),
                "model-file": string("The model render.", format="binary"),
                "layer-file": {
                    **array(binary), "maxItems": MAX_LAYERS,
                    "description": f"Up to {MAX_LAYERS} map layers in the render's frame (RGBA), drawn in order; "
                    "without one the render itself is drawn. Black and transparent pixels are not drawn.",
                },
            },
            required=["user-file", "model-file"],
        )}},
    }
    return operation(
        f"overlay{name}",
        "Register, then draw the map layers over the photo",
        tag,
        responses(image, 404, 422, 501, *UPLOAD_ERRORS),
        description="Registers the photo onto the model render as the registrar does, then answers the layers drawn "
        "over the photo in its own frame (PNG or JPEG). Spends the registrar's rate-limit budget." + alias,
        parameters=[algorithm, pipeline, transparency, image_format, view],
        body=body,
    )


def other_paths():
    health = operation(
        "health",
        "Liveness, for load balancers; never rate limited",
        ["api"],
        responses(success_response("The server is up.", "HealthEnvelope"), 500),
    )
    document = operation(
        "openapi",
        "This document",
        ["api"],
        responses(
            {
                "description": "The OpenAPI document.",
                "content": json_content(obj({"openapi": string(), "info": {"type": "object"},
                                             "paths": {"type": "object"}})),
            },
            500,
        ),
    )
    page = operation(
        "page",
        "The page to try the overlay in a browser",
        ["page"],
        responses({"description": "The page (its script and style are under /static/).",
                   "content": {HTML: {"schema": string()}}}, 405, 500),
    )
    metrics = operation(
        "metrics",
        "Prometheus metrics; never rate limited",
        ["api"],
        responses(
            {
                "description": "The metrics in Prometheus's text exposition format (version 0.0.4).",
                "content": {"text/plain": {"schema": string()}},
            },
            404, 500,
        ),
        description="Requests by route and status, registrations by algorithm, pipeline and outcome, durations, "
        "slot waits, 503s, rate-limit breaches and storage outages, and the build. 404 when the server's "
        "metrics_enabled is False.",
    )
    return {"/api/health": {"get": health}, "/api/openapi.json": {"get": document}, "/api/metrics": {"get": metrics}, "/": {"get": page}}


def build_document():
    """The OpenAPI document as a dict (plain JSON values only)."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "moontrek",
            "version": __version__,
            "description": "The Moon-Trek registration server: homographies from Moon photos to model renders. "
            "Every answer is JSON: {ok: true, status: 200, payload} or {ok: false, status, error}; "
            "except the overlay's success (an image) and the page at / (HTML).",
            "license": {"name": "MIT"},
        },
        "tags": [
            {"name": "api", "description": "The API."},
            {"name": "pyapi", "description": "The path the deployed Moon-Trek client posts to; the same as /api."},
            {"name": "page", "description": "The page to try the API in a browser."},
        ],
        "paths": {**prefixed_paths("/api"), **prefixed_paths("/pyapi"), **other_paths()},
        "components": components(),
    }


class OpenAPIResource:
    """``GET /api/openapi.json``: the API's contract."""

    def __init__(self):
        self.document = build_document()

    def on_get(self, req, resp):
        resp.media = self.document
