"""The OpenAPI document: valid, complete, and what the app really answers."""

import json

import falcon
import falcon.testing
import numpy as np
import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate as validate_spec

from moontrek.app import create_app
from moontrek.openapi import ERROR_STATUSES, build_document
from moontrek.synthetic import encode
from tests.conftest import multipart

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

#: Every (method, path template) the API serves. A new route must be added
#: here and to the document; the tests below hold the three together.
ROUTES = {
    ("POST", "/api/registrar/{algorithm}"),
    ("POST", "/pyapi/registrar/{algorithm}"),
    ("GET", "/api/registrar"),
    ("GET", "/pyapi/registrar"),
    ("GET", "/api/health"),
    ("GET", "/api/openapi.json"),
    ("GET", "/api/metrics"),
    ("POST", "/api/moon/detect"),
    ("POST", "/pyapi/moon/detect"),
    ("POST", "/api/overlay/{algorithm}"),
    ("POST", "/pyapi/overlay/{algorithm}"),
    ("GET", "/"),
}


def app_routes(app):
    """The (method, uri_template) pairs with a responder of their resource,
    from Falcon's router: not Falcon's default 405/OPTIONS responders."""
    found = set()

    def walk(nodes):
        for node in nodes:
            if node.resource is not None:
                for method, responder in node.method_map.items():
                    if getattr(responder, "__self__", None) is node.resource:
                        found.add((method, node.uri_template))
            walk(node.children)

    walk(app._router._roots)
    return found


def documented_routes(document):
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def check_response(document, method, template, result):
    """Assert that a falcon.testing result is what the document promises for
    ``method template``: a documented status, JSON, the body's schema and
    the documented headers (required ones present, all well formed)."""
    operation = document["paths"][template][method.lower()]
    answers = operation["responses"]
    key = str(result.status_code)
    assert key in answers, f"{method} {template} answered {key}, documented: {sorted(answers)}"
    answer = answers[key]
    if "$ref" in answer:
        answer = document["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]

    for name, spec in answer.get("headers", {}).items():
        if "$ref" in spec:
            spec = document["components"]["headers"][spec["$ref"].rsplit("/", 1)[1]]
        value = result.headers.get(name)
        if spec.get("required"):
            assert value is not None, f"{method} {template} {key}: header {name} is missing"
        if value is not None:
            validator(document, spec["schema"]).validate(value)

    content_type = result.headers.get("Content-Type", "")
    media = content_type.split(";")[0].strip()
    assert media in answer["content"], content_type
    if media != "application/json":
        # An image or the page: the document promises the type, not a shape.
        assert result.content
        return
    schema = answer["content"]["application/json"]["schema"]
    errors = sorted(validator(document, schema).iter_errors(result.json), key=str)
    assert not errors, f"{method} {template} {key}: " + "; ".join(e.message for e in errors[:5])


def validator(document, schema):
    """An OpenAPI 3.0 schema validator whose #/components refs resolve in ``document``."""
    return OAS30Validator({"allOf": [schema], "components": document["components"]})


@pytest.fixture(scope="module")
def document():
    return build_document()


class TestDocument:
    def test_valid_openapi(self, client):
        """The served document passes the OpenAPI 3 validator."""
        result = client.simulate_get("/api/openapi.json")
        assert result.status_code == 200
        validate_spec(result.json)

    def test_served_document_is_the_built_one(self, client, document):
        """GET /api/openapi.json serves build_document(), and it is plain JSON."""
        assert client.simulate_get("/api/openapi.json").json == document
        assert json.loads(json.dumps(document, allow_nan=False)) == document

    def test_documented_routes_are_the_list(self, document):
        """The document has exactly the routes of ROUTES, no more, no fewer."""
        assert documented_routes(document) == ROUTES

    def test_every_app_route_is_documented(self, app):
        """Every route the app serves is in ROUTES (and so in the document)."""
        assert app_routes(app) - ROUTES == set()

    @pytest.mark.parametrize("route", sorted(ROUTES), ids=" ".join)
    def test_every_documented_route_is_served(self, app, client, route):
        """Every documented route is wired into the app, and a request to it
        does not fall through to the unknown-path 404."""
        assert route in app_routes(app)
        method, template = route
        path = template.replace("{algorithm}", "ORB")
        result = client.simulate_request(method, path)
        assert "There is nothing at" not in result.text

    def test_every_error_status_is_a_component(self, document):
        """Each error status has its component response with the envelope."""
        responses = document["components"]["responses"]
        assert {name for name, _ in ERROR_STATUSES.values()} == set(responses)
        for operation in (op for item in document["paths"].values() for op in item.values()):
            for status in operation["responses"]:
                assert status == "200" or int(status) in ERROR_STATUSES

    def test_registrar_documents_every_status(self, document):
        """The registrar POSTs list every status the README promises."""
        for prefix in ("/api", "/pyapi"):
            statuses = set(document["paths"][f"{prefix}/registrar/{{algorithm}}"]["post"]["responses"])
            assert statuses == {"200"} | {str(code) for code in ERROR_STATUSES}
            detect = set(document["paths"][f"{prefix}/moon/detect"]["post"]["responses"])
            assert detect == {"200", "400", "405", "413", "415", "422", "429", "500", "503"}
            overlay = set(document["paths"][f"{prefix}/overlay/{{algorithm}}"]["post"]["responses"])
            assert overlay == {"200"} | {str(code) for code in ERROR_STATUSES}

    def test_error_envelope_is_closed(self, document):
        """The error envelope allows no other keys, and each error response
        pins the body's status to the HTTP status."""
        envelope = document["components"]["schemas"]["ErrorEnvelope"]
        assert envelope["additionalProperties"] is False
        assert set(envelope["required"]) == {"ok", "status", "error"}
        not_found = document["components"]["responses"]["NotFound"]
        check = validator(document, not_found["content"]["application/json"]["schema"])
        assert check.is_valid({"ok": False, "status": 404, "error": "x"})
        assert not check.is_valid({"ok": False, "status": 400, "error": "x"})
        assert not check.is_valid({"ok": False, "status": 404, "error": "x", "trace": "y"})


# -- real answers against the document --------------------------------------------------


def post(client, path, files, **kwargs):
    body, headers = multipart(files)
    return client.simulate_post(path, body=body, headers=headers, **kwargs)


def blank_png():
    return encode(np.zeros((200, 200, 3), np.uint8))


def busy(client, path, files):
    """Post while another request holds the only registration slot."""
    resource = client.app._router.find(path)[0]
    slots = resource.registrar._slots
    assert slots.acquire(timeout=1)
    try:
        return post(client, path, files)
    finally:
        slots.release()


def explode(exc):
    def raiser(*args, **kwargs):
        raise exc

    return raiser


# (id, method, template, concrete path, expected status, request(client, pair_files) -> result,
#  config overrides, Registrar attribute to replace or None)
REG = "/api/registrar/{algorithm}"
PYREG = "/pyapi/registrar/{algorithm}"
DETECT = "/api/moon/detect"
PYDETECT = "/pyapi/moon/detect"
OVERLAY = "/api/overlay/{algorithm}"
PYOVERLAY = "/pyapi/overlay/{algorithm}"
# Every registration slot taken (see busy()), and a wait too short to get one.
BUSY = {"max_concurrent_registrations": 1, "registration_wait_seconds": 0.01}
# Rate limits kept in a Redis that is not there, and the server failing closed.
STORAGE_DOWN = {"rate_limit_storage_uri": "redis://127.0.0.1:9/0", "rate_limit_fail_open": False}
SCENARIOS = [
    ("register", "POST", REG, 200, lambda c, f: post(c, "/api/registrar/SIFT", f), {}, None),
    ("register-pyapi", "POST", PYREG, 200, lambda c, f: post(c, "/pyapi/registrar/orb?pipeline=classic", f), {}, None),
    ("list", "GET", "/api/registrar", 200, lambda c, f: c.simulate_get("/api/registrar"), {}, None),
    ("list-pyapi", "GET", "/pyapi/registrar", 200, lambda c, f: c.simulate_get("/pyapi/registrar"), {}, None),
    ("list-no-surf", "GET", "/api/registrar", 200, lambda c, f: c.simulate_get("/api/registrar"),
     {"surf_enabled": False}, None),
    ("health", "GET", "/api/health", 200, lambda c, f: c.simulate_get("/api/health"), {}, None),
    ("openapi", "GET", "/api/openapi.json", 200, lambda c, f: c.simulate_get("/api/openapi.json"), {}, None),
    ("metrics", "GET", "/api/metrics", 200, lambda c, f: c.simulate_get("/api/metrics"), {}, None),
    ("metrics-off", "GET", "/api/metrics", 404, lambda c, f: c.simulate_get("/api/metrics"),
     {"metrics_enabled": False}, None),
    ("missing-field", "POST", REG, 400, lambda c, f: post(c, "/api/registrar/SIFT", {"user-file": f["user-file"]}),
     {}, None),
    ("not-an-image", "POST", REG, 400,
     lambda c, f: post(c, "/api/registrar/SIFT", {"user-file": b"GIF89a nope", "model-file": f["model-file"]}),
     {}, None),
    ("malformed", "POST", PYREG, 400,
     lambda c, f: c.simulate_post("/pyapi/registrar/SIFT", body=b"--abc\r\nnonsense",
                                  headers={"Content-Type": "multipart/form-data; boundary=abc"}), {}, None),
    ("unknown-algorithm", "POST", REG, 404, lambda c, f: post(c, "/api/registrar/FAST", f), {}, None),
    ("wrong-method", "POST", REG, 405, lambda c, f: c.simulate_get("/api/registrar/SIFT"), {}, None),
    ("too-large", "POST", REG, 413, lambda c, f: post(c, "/api/registrar/SIFT", f), {"max_upload_bytes": 1000}, None),
    ("too-many-pixels", "POST", REG, 413, lambda c, f: post(c, "/api/registrar/SIFT", f),
     {"max_image_pixels": 10_000}, None),
    ("json-body", "POST", REG, 415,
     lambda c, f: c.simulate_post("/api/registrar/SIFT", json={"user-file": "x"}), {}, None),
    ("unknown-pipeline", "POST", REG, 422, lambda c, f: post(c, "/api/registrar/SIFT?pipeline=magic", f), {}, None),
    ("no-keypoints", "POST", REG, 422,
     lambda c, f: post(c, "/api/registrar/ORB", {"user-file": blank_png(), "model-file": blank_png()}), {}, None),
    ("rate-limited", "POST", REG, 429,
     lambda c, f: [post(c, "/api/registrar/FAST", f) for _ in range(2)][-1],
     {"default_rate_limits": ["1 per minute"]}, None),
    ("unexpected", "POST", REG, 500, lambda c, f: post(c, "/api/registrar/SIFT", f), {},
     ("register", RuntimeError("boom"))),
    ("surf-off", "POST", REG, 501, lambda c, f: post(c, "/api/registrar/surf", f), {"surf_enabled": False}, None),
    ("busy", "POST", REG, 503, lambda c, f: busy(c, "/api/registrar/SIFT", f), BUSY, None),
    ("storage-down", "POST", PYREG, 503, lambda c, f: post(c, "/pyapi/registrar/SIFT", f), STORAGE_DOWN, None),
    ("detect", "POST", DETECT, 200, lambda c, f: post(c, "/api/moon/detect", {"image-file": f["user-file"]}), {}, None),
    ("detect-pyapi", "POST", PYDETECT, 200,
     lambda c, f: post(c, "/pyapi/moon/detect", {"image-file": f["model-file"]}), {}, None),
    ("detect-no-moon", "POST", DETECT, 422, lambda c, f: post(c, "/api/moon/detect", {"image-file": blank_png()}),
     {}, None),
    ("detect-not-an-image", "POST", DETECT, 400, lambda c, f: post(c, "/api/moon/detect", {"image-file": b"\x89PNG"}),
     {}, None),
    ("detect-missing", "POST", DETECT, 400, lambda c, f: post(c, "/api/moon/detect", {"other": b"x"}), {}, None),
    ("detect-wrong-method", "POST", DETECT, 405, lambda c, f: c.simulate_get("/api/moon/detect"), {}, None),
    ("detect-json", "POST", DETECT, 415, lambda c, f: c.simulate_post("/api/moon/detect", json={}), {}, None),
    ("detect-too-large", "POST", DETECT, 413,
     lambda c, f: post(c, "/api/moon/detect", {"image-file": f["user-file"]}), {"max_upload_bytes": 1000}, None),
    ("detect-too-many-pixels", "POST", DETECT, 413,
     lambda c, f: post(c, "/api/moon/detect", {"image-file": f["user-file"]}), {"max_image_pixels": 10_000}, None),
    ("detect-rate-limited", "POST", PYDETECT, 429,
     lambda c, f: [post(c, "/pyapi/moon/detect", {"x": b"x"}) for _ in range(2)][-1],
     {"default_rate_limits": ["1 per minute"]}, None),
    ("detect-unexpected", "POST", DETECT, 500,
     lambda c, f: post(c, "/api/moon/detect", {"image-file": f["user-file"]}), {},
     ("detect_moon", RuntimeError("boom"))),
    ("detect-busy", "POST", DETECT, 503,
     lambda c, f: busy(c, "/api/moon/detect", {"image-file": f["user-file"]}), BUSY, None),
    ("detect-storage-down", "POST", DETECT, 503,
     lambda c, f: post(c, "/api/moon/detect", {"image-file": f["user-file"]}), STORAGE_DOWN, None),
    ("overlay", "POST", OVERLAY, 200, lambda c, f: post(c, "/api/overlay/ORB", f), {}, None),
    ("overlay-jpeg-pyapi", "POST", PYOVERLAY, 200,
     lambda c, f: post(c, "/pyapi/overlay/ORB?format=jpeg&view=blend&transparency=0.5",
                       {**f, "layer-file": f["model-file"]}),
     {}, None),
    ("overlay-bad-view", "POST", OVERLAY, 400, lambda c, f: post(c, "/api/overlay/ORB?view=x", f), {}, None),
    ("overlay-unknown-algorithm", "POST", OVERLAY, 404, lambda c, f: post(c, "/api/overlay/FAST", f), {}, None),
    ("overlay-wrong-method", "POST", OVERLAY, 405, lambda c, f: c.simulate_get("/api/overlay/ORB"), {}, None),
    ("overlay-too-large", "POST", OVERLAY, 413, lambda c, f: post(c, "/api/overlay/ORB", f),
     {"max_upload_bytes": 1000}, None),
    ("overlay-json", "POST", OVERLAY, 415, lambda c, f: c.simulate_post("/api/overlay/ORB", json={}), {}, None),
    ("overlay-no-keypoints", "POST", OVERLAY, 422,
     lambda c, f: post(c, "/api/overlay/ORB", {"user-file": blank_png(), "model-file": blank_png()}), {}, None),
    ("overlay-rate-limited", "POST", PYOVERLAY, 429,
     lambda c, f: [post(c, "/pyapi/overlay/FAST", f) for _ in range(2)][-1],
     {"default_rate_limits": ["1 per minute"]}, None),
    ("overlay-unexpected", "POST", OVERLAY, 500, lambda c, f: post(c, "/api/overlay/ORB", f), {},
     ("overlay", RuntimeError("boom"))),
    ("overlay-surf-off", "POST", OVERLAY, 501, lambda c, f: post(c, "/api/overlay/surf", f),
     {"surf_enabled": False}, None),
    ("overlay-busy", "POST", OVERLAY, 503, lambda c, f: busy(c, "/api/overlay/ORB", f), BUSY, None),
    ("page", "GET", "/", 200, lambda c, f: c.simulate_get("/"), {}, None),
    ("page-wrong-method", "GET", "/", 405, lambda c, f: c.simulate_post("/"), {}, None),
]


@pytest.mark.parametrize(
    "method,template,status,request_,overrides,patch",
    [scenario[1:] for scenario in SCENARIOS],
    ids=[scenario[0] for scenario in SCENARIOS],
)
def test_real_answers_match_the_document(
    make_config, pair_files, monkeypatch, document, method, template, status, request_, overrides, patch
):
    """Each scenario gets its expected status, and the answer (status, body,
    content type, headers) is what the document says for that operation."""
    from moontrek.registrar import Registrar

    app = create_app(make_config(**overrides))
    if patch is not None:
        attribute, exc = patch
        monkeypatch.setattr(Registrar, attribute, explode(exc))
    result = request_(falcon.testing.TestClient(app), pair_files)
    assert result.status_code == status, result.text
    check_response(document, method, template, result)


def test_scenarios_cover_every_error_status():
    """The scenarios above exercise every error status the document lists."""
    exercised = {scenario[3] for scenario in SCENARIOS}
    assert set(ERROR_STATUSES) <= exercised
