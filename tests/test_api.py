"""The HTTP API through falcon.testing."""

import json

import cv2
import numpy as np
import pytest

from moontrek.registration import ALGORITHM_NAMES, algorithm_table, corner_error
from moontrek.synthetic import encode
from tests.conftest import gibbous_photo, multipart

AVAILABLE = [name for name, entry in algorithm_table().items() if entry.available]


def post_pair(client, files, path="/api/registrar/SIFT", **kwargs):
    body, headers = multipart(files)
    return client.simulate_post(path, body=body, headers=headers, **kwargs)


def read_log(config):
    from pathlib import Path

    return Path(config["log_filepath"]).read_text(encoding="utf-8", errors="replace")


def assert_envelope(result, status, *fragments):
    assert result.status_code == status
    assert result.json["ok"] is False
    assert result.json["status"] == status
    assert set(result.json) == {"ok", "status", "error"}
    for fragment in fragments:
        assert fragment in result.json["error"]


class TestRegistrar:
    @pytest.mark.parametrize("algorithm", AVAILABLE)
    def test_success_envelope_and_homography(self, client, pair_files, moon_pair, algorithm):
        """Each available algorithm answers the success envelope with a 3x3
        matrix of plain numbers that maps user pixels onto the fitted model."""
        result = post_pair(client, pair_files, f"/api/registrar/{algorithm}?pipeline=classic")
        assert result.status_code == 200, result.text
        assert result.json["ok"] is True and result.json["status"] == 200
        matrix = result.json["payload"]["homography_matrix"]
        assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
        assert all(type(value) is float for row in matrix for value in row)
        height, width = moon_pair.user.shape[:2]
        assert corner_error(np.array(matrix), moon_pair.expected, width, height) < 0.02 * max(width, height)

    def test_algorithm_is_case_insensitive(self, client, pair_files):
        """'sift', 'Sift' and 'SIFT' are the same algorithm."""
        result = post_pair(client, pair_files, "/api/registrar/sIfT")
        assert result.status_code == 200
        assert result.json["payload"]["algorithm"] == "SIFT"

    def test_pyapi_alias(self, client, pair_files):
        """The deployed client's /pyapi path answers exactly as /api does."""
        api = post_pair(client, pair_files, "/api/registrar/ORB").json
        pyapi = post_pair(client, pair_files, "/pyapi/registrar/ORB").json
        assert pyapi["payload"]["homography_matrix"] == api["payload"]["homography_matrix"]
        assert client.simulate_get("/pyapi/registrar").json == client.simulate_get("/api/registrar").json

    def test_payload_carries_counts(self, client, pair_files):
        """The payload reports keypoints, matches and inliers beside the matrix."""
        payload = post_pair(client, pair_files).json["payload"]
        assert payload["inliers"] >= 4 and payload["matches"] >= payload["inliers"]
        assert payload["keypoints"]["user"] > 0 and payload["keypoints"]["model"] > 0

    def test_payload_names_the_companions_features(self, client, pair_files, monkeypatch):
        """An answer found with another detector's keypoints (the
        algorithm's own found too little) says whose they were."""
        from moontrek.registration import moon_pipeline

        original = moon_pipeline._solve_disk

        def own_fails(user_side, model_side, algorithm, max_scale, finer, ecc=True):
            if algorithm.name == "ORB":
                raise moon_pipeline.HomographyNotFoundError()
            return original(user_side, model_side, algorithm, max_scale, finer, ecc)

        monkeypatch.setattr(moon_pipeline, "_solve_disk", own_fails)
        payload = post_pair(client, pair_files, path="/pyapi/registrar/ORB").json["payload"]
        assert payload["algorithm"] == "ORB" and payload["features"] == "SIFT"
        assert payload["inliers"] >= moon_pipeline.COMPANION_MIN_INLIERS["SIFT"]

    def test_extra_unknown_fields_are_ignored(self, client, pair_files):
        """Fields other than the two files do not disturb a registration."""
        body, headers = multipart(pair_files, fields={"comment": "hello"})
        assert client.simulate_post("/api/registrar/ORB", body=body, headers=headers).status_code == 200


class TestAlgorithmsAndHealth:
    def test_algorithm_list(self, client):
        """GET /api/registrar lists every algorithm with availability and a
        reason for the unavailable ones."""
        result = client.simulate_get("/api/registrar")
        assert result.status_code == 200
        entries = result.json["payload"]["algorithms"]
        assert [entry["name"] for entry in entries] == list(ALGORITHM_NAMES)
        for entry in entries:
            assert isinstance(entry["available"], bool)
            assert entry["available"] or entry["reason"]

    def test_surf_switched_off(self, make_config):
        """An operator can switch SURF off; it is then listed unavailable and
        a SURF request gets 501 with the reason."""
        from falcon.testing import TestClient

        from moontrek.app import create_app

        client = TestClient(create_app(make_config(surf_enabled=False)))
        surf = [e for e in client.simulate_get("/api/registrar").json["payload"]["algorithms"] if e["name"] == "SURF"]
        assert surf[0]["available"] is False and "switched off" in surf[0]["reason"]
        body, headers = multipart({"user-file": b"x", "model-file": b"y"})
        result = client.simulate_post("/api/registrar/surf", body=body, headers=headers)
        assert_envelope(result, 501, "switched off")

    def test_health(self, client):
        """GET /api/health answers 200 with the version."""
        result = client.simulate_get("/api/health")
        assert result.status_code == 200
        assert result.json["payload"]["status"] == "ok" and result.json["payload"]["version"]


class TestFailures:
    def test_missing_field(self, client, pair_files):
        """A missing file field is a 400 that names the field."""
        result = post_pair(client, {"user-file": pair_files["user-file"]})
        assert_envelope(result, 400, "model-file", "missing")

    def test_empty_field(self, client, pair_files):
        """An empty file is a 400 that names the field."""
        result = post_pair(client, {"user-file": b"", "model-file": pair_files["model-file"]})
        assert_envelope(result, 400, "user-file", "empty")

    def test_not_an_image(self, client, pair_files):
        """A file that does not decode as an image is a 400 saying so."""
        result = post_pair(client, {"user-file": b"%PDF-1.4 not an image", "model-file": pair_files["model-file"]})
        assert_envelope(result, 400, "user-file", "not an image")

    def test_unknown_algorithm(self, client, pair_files):
        """An unknown algorithm is a 404 that lists the valid ones."""
        result = post_pair(client, pair_files, "/api/registrar/FAST")
        assert_envelope(result, 404, "FAST", "SIFT, ORB, AKAZE, BRISK, SURF")

    def test_unknown_pipeline(self, client, pair_files):
        """An unknown ?pipeline= is refused with the valid names."""
        result = post_pair(client, pair_files, "/api/registrar/SIFT?pipeline=magic")
        assert_envelope(result, 422, "magic", "classic")

    @pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
    def test_wrong_method(self, client, method):
        """Methods other than POST on a registrar route are 405 with Allow."""
        result = client.simulate_request(method, "/api/registrar/SIFT")
        assert_envelope(result, 405, method, "POST")
        assert "POST" in result.headers["Allow"]

    def test_unknown_path(self, client):
        """Any other path is a 404 envelope."""
        assert_envelope(client.simulate_get("/api/nothing-here"), 404, "/api/nothing-here")

    def test_body_too_large_from_content_length(self, make_config, pair_files):
        """A body over max_upload_bytes is refused with 413 from its
        Content-Length, before it is parsed."""
        from falcon.testing import TestClient

        from moontrek.app import create_app

        client = TestClient(create_app(make_config(max_upload_bytes=1000)))
        result = post_pair(client, pair_files)
        assert_envelope(result, 413, "1000 bytes")

    def test_too_many_pixels(self, make_config, pair_files):
        """An image over max_image_pixels is a 413 naming its pixel count and the limit."""
        from falcon.testing import TestClient

        from moontrek.app import create_app

        client = TestClient(create_app(make_config(max_image_pixels=10_000)))
        result = post_pair(client, pair_files)
        assert_envelope(result, 413, "520x500", "10000")

    @pytest.mark.parametrize(
        "content_type,body",
        [("application/json", b'{"user-file": "x"}'), ("application/x-www-form-urlencoded", b"a=b"), (None, b"")],
    )
    def test_wrong_content_type(self, client, content_type, body):
        """A body that is not multipart/form-data is a 415."""
        headers = {"Content-Type": content_type} if content_type else {}
        result = client.simulate_post("/api/registrar/SIFT", body=body, headers=headers)
        assert_envelope(result, 415, "multipart/form-data")

    def test_malformed_multipart(self, client):
        """A multipart body that does not parse is a 400."""
        headers = {"Content-Type": "multipart/form-data; boundary=abc"}
        result = client.simulate_post("/api/registrar/SIFT", body=b"--abc\r\nnonsense", headers=headers)
        assert_envelope(result, 400, "multipart")

    def test_duplicate_field(self, client, pair_files):
        """A file field sent twice is a 400."""
        files = {"user-file": [pair_files["user-file"]] * 2, "model-file": pair_files["model-file"]}
        assert_envelope(post_pair(client, files), 400, "more than once")

    def test_not_enough_keypoints(self, client):
        """Images with nothing to match give the original server's sentence with 422."""
        blank = encode(np.zeros((200, 200, 3), np.uint8))
        result = post_pair(client, {"user-file": blank, "model-file": blank}, "/api/registrar/ORB?pipeline=classic")
        assert_envelope(result, 422, "No enough keypoints for finding homography matrix")

    @pytest.mark.parametrize("algorithm", ["SIFT", "ORB", "SURF"])
    def test_over_exposed_moon(self, client, pair_files, algorithm):
        """A photo whose Moon is white all over (a phone's exposure for the
        sky) is told so with 422, in a sentence that says what to change,
        rather than the keypoint sentence."""
        photo = np.full((900, 1200, 3), 12, np.uint8)
        cv2.circle(photo, (640, 420), 180, (255, 255, 255), -1, cv2.LINE_AA)
        files = {"user-file": encode(photo), "model-file": pair_files["model-file"]}
        result = post_pair(client, files, f"/api/registrar/{algorithm}")
        assert_envelope(result, 422, "over-exposed")
        assert "less exposure" in result.json["error"]

    def test_homography_not_found(self, client, pair_files, monkeypatch):
        """When the estimator finds no homography the answer is 422 with the
        original server's sentence."""
        import moontrek.registration.classic as classic

        monkeypatch.setattr(classic.cv2, "findHomography", lambda *args, **kwargs: (None, None))
        result = post_pair(client, pair_files, "/api/registrar/ORB?pipeline=classic")
        assert_envelope(result, 422, "Cannot find Homography Matrix")

    def test_unexpected_error_is_500_and_logged(self, client, pair_files, monkeypatch, config):
        """An unexpected exception is a 500 envelope with no traceback in it;
        the traceback goes to the log."""
        from moontrek.registrar import Registrar

        def explode(*args, **kwargs):
            raise RuntimeError("secret internal detail")

        monkeypatch.setattr(Registrar, "register", explode)
        result = post_pair(client, pair_files)
        assert_envelope(result, 500, "unexpected")
        assert "secret" not in result.text
        log = read_log(config)
        assert "Traceback" in log and "secret internal detail" in log


class TestCORS:
    def test_preflight(self, client):
        """A browser's preflight for a POST is answered with the CORS headers."""
        result = client.simulate_options(
            "/api/registrar/SIFT",
            headers={
                "Origin": "https://moon-trek.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert result.status_code == 200
        assert result.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in result.headers["Access-Control-Allow-Methods"]

    def test_exposes_rate_limit_headers(self, client, pair_files):
        """Responses to browsers expose the rate-limit headers to scripts."""
        body, headers = multipart(pair_files)
        headers["Origin"] = "https://moon-trek.example"
        result = client.simulate_post("/api/registrar/ORB", body=body, headers=headers)
        exposed = result.headers["Access-Control-Expose-Headers"]
        for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"):
            assert name in exposed

    def test_configured_origins(self, make_config):
        """With a list of origins, only those get Access-Control-Allow-Origin."""
        from falcon.testing import TestClient

        from moontrek.app import create_app

        client = TestClient(create_app(make_config(cors_allow_origins=["https://good.example"])))
        good = client.simulate_get("/api/health", headers={"Origin": "https://good.example"})
        bad = client.simulate_get("/api/health", headers={"Origin": "https://evil.example"})
        assert good.headers["Access-Control-Allow-Origin"] == "https://good.example"
        assert "Access-Control-Allow-Origin" not in bad.headers


class TestRateLimit:
    @pytest.fixture
    def limited(self, make_config):
        from falcon.testing import TestClient

        from moontrek.app import create_app

        config = make_config(default_rate_limits=["2 per minute"])
        return TestClient(create_app(config)), config

    def test_429_after_the_budget(self, limited, pair_files):
        """After the configured number of requests the next is a 429 envelope
        with Retry-After, and every response carries the X-RateLimit headers."""
        client, config = limited
        first, second, third = (post_pair(client, pair_files, "/api/registrar/ORB") for _ in range(3))
        assert first.status_code == second.status_code == 200
        assert first.headers["X-RateLimit-Limit"] == "2"
        assert [first.headers["X-RateLimit-Remaining"], second.headers["X-RateLimit-Remaining"]] == ["1", "0"]
        assert_envelope(third, 429, "try again")
        assert 1 <= int(third.headers["Retry-After"]) <= 60
        assert third.headers["X-RateLimit-Remaining"] == "0"
        assert int(third.headers["X-RateLimit-Reset"]) > 1_000_000_000
        log = read_log(config)
        assert log.count("rate limit exceeded") == 1

    def test_alias_shares_the_budget(self, limited, pair_files):
        """/api and /pyapi spend one budget, so the alias does not double it."""
        client, _ = limited
        post_pair(client, pair_files, "/api/registrar/ORB")
        post_pair(client, pair_files, "/pyapi/registrar/ORB")
        assert post_pair(client, pair_files, "/pyapi/registrar/ORB").status_code == 429

    def test_clients_have_separate_budgets(self, limited, pair_files):
        """The budget is per client address."""
        client, _ = limited
        for _ in range(3):
            post_pair(client, pair_files, "/api/registrar/ORB", remote_addr="10.0.0.1")
        assert post_pair(client, pair_files, "/api/registrar/ORB", remote_addr="10.0.0.2").status_code == 200

    def test_health_and_list_are_not_limited(self, limited):
        """Health checks and the algorithm list never spend the budget."""
        client, _ = limited
        for _ in range(5):
            assert client.simulate_get("/api/health").status_code == 200
            assert client.simulate_get("/api/registrar").status_code == 200
        assert "X-RateLimit-Limit" not in client.simulate_get("/api/health").headers


class TestLogging:
    def test_request_and_registration_lines(self, client, config, pair_files):
        """The log file gets one line per request and one per registration,
        and never the image bytes."""
        post_pair(client, pair_files, "/api/registrar/ORB")
        log = read_log(config)
        assert "POST /api/registrar/ORB 200" in log
        assert "registered ORB" in log and "inliers" in log
        assert "PNG" not in log and len(log) < 5000

    def test_json_numbers(self, client, pair_files):
        """The body is plain JSON (no NaN or numpy types)."""
        result = post_pair(client, pair_files, "/api/registrar/ORB")
        json.loads(result.text)


class TestMoonDetect:
    def test_finds_the_disk(self, client):
        """POST /api/moon/detect answers the disk's centre and radius."""
        from moontrek.synthetic import render_moon

        image = np.zeros((480, 640, 3), np.uint8)
        image[40:440, 200:600] = render_moon(400, seed=4, radius=150)
        body, headers = multipart({"image-file": encode(image)})
        result = client.simulate_post("/api/moon/detect", body=body, headers=headers)
        assert result.status_code == 200, result.text
        circle = result.json["payload"]["circle"]
        assert abs(circle["x"] - 400) < 5 and abs(circle["y"] - 240) < 5
        assert abs(circle["radius"] - 150) < 0.1 * 150
        assert "X-RateLimit-Limit" in result.headers

    def test_circle_on_the_lit_limb(self, client):
        """An over-exposed gibbous Moon on a bright twilight sky: the search
        alone follows the terminator too (a few per cent off, which a client
        cropping with 15% of padding can ill afford); the answer is fitted
        to the lit limb, within 1% of the radius."""
        from moontrek.registration.moon import find_moon

        image, (x, y, r) = gibbous_photo()
        searched = find_moon(image)
        assert max(np.hypot(searched.x - x, searched.y - y), abs(searched.radius - r)) > 0.02 * r
        body, headers = multipart({"image-file": encode(image)})
        result = client.simulate_post("/api/moon/detect", body=body, headers=headers)
        assert result.status_code == 200, result.text
        circle = result.json["payload"]["circle"]
        assert np.hypot(circle["x"] - x, circle["y"] - y) <= 0.01 * r
        assert abs(circle["radius"] - r) <= 0.01 * r

    def test_no_moon(self, client):
        """An image without a Moon is a 422 envelope saying so."""
        body, headers = multipart({"image-file": encode(np.full((300, 300, 3), 40, np.uint8))})
        result = client.simulate_post("/pyapi/moon/detect", body=body, headers=headers)
        assert_envelope(result, 422, "No Moon")

    def test_missing_field(self, client):
        """The image must come in the image-file field."""
        body, headers = multipart({"user-file": b"x"})
        assert_envelope(client.simulate_post("/api/moon/detect", body=body, headers=headers), 400, "image-file")


class TestQualityFields:
    def test_moon_pipeline_payload(self, client, pair_files, moon_pair):
        """The default (moon) pipeline's payload keeps homography_matrix and
        adds the quality fields: matches, inliers, inlier ratio, reprojection
        error, the circles found, milliseconds and the implementation."""
        payload = post_pair(client, pair_files, "/api/registrar/SIFT").json["payload"]
        assert payload["pipeline"] == "moon"
        for key in ("matches", "inliers", "inlier_ratio", "reprojection_error_px", "elapsed_ms", "implementation"):
            assert key in payload
        assert 0 < payload["inlier_ratio"] <= 1 and payload["reprojection_error_px"] < 5
        assert set(payload["circles"]) == {"user", "model"}
        assert set(payload["circles"]["user"]) == {"x", "y", "radius"}
        height, width = moon_pair.user.shape[:2]
        error = corner_error(np.array(payload["homography_matrix"]), moon_pair.expected, width, height)
        assert error < 0.01 * max(width, height)

    def test_real_demo_pairs_over_the_api(self, client):
        """Every available algorithm registers the real demo pairs within the
        reference tolerance through the API (skipped without ../shared)."""
        from tests.conftest import shared_data

        folder = shared_data("registrate")
        reference = json.loads((folder / "reference.json").read_text())
        for name, pair in reference["pairs"].items():
            files = {"user-file": (folder / pair["user"]).read_bytes(), "model-file": (folder / pair["model"]).read_bytes()}
            width, height = pair["user_size"]
            for algorithm in AVAILABLE:
                result = post_pair(client, files, f"/pyapi/registrar/{algorithm}")
                assert result.status_code == 200, (name, algorithm, result.text)
                matrix = np.array(result.json["payload"]["homography_matrix"])
                error = corner_error(matrix, np.array(pair["homography"]), width, height)
                assert error <= 0.03 * max(width, height), (name, algorithm, error)
