"""GET /api/metrics: Prometheus's text format, counts that follow the requests."""

import cv2
import falcon.testing
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from moontrek import __version__
from moontrek.app import create_app
from moontrek.synthetic import encode
from tests.conftest import multipart


def scrape(client):
    """{(sample name, frozenset(labels)): value} from one scrape."""
    result = client.simulate_get("/api/metrics")
    assert result.status_code == 200, result.text
    samples = {}
    for family in text_string_to_metric_families(result.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def post(client, path, files):
    body, headers = multipart(files)
    return client.simulate_post(path, body=body, headers=headers)


def blank():
    return encode(np.zeros((200, 200, 3), np.uint8))


REG = "/api/registrar/{algorithm}"


class TestExposition:
    def test_text_format_and_build_info(self, client):
        """The scrape is Prometheus's text format, with the build's version,
        OpenCV version and which SURF serves."""
        result = client.simulate_get("/api/metrics")
        assert result.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        samples = scrape(client)
        assert value(samples, "moontrek_build_info", version=__version__, opencv=cv2.__version__,
                     surf="moontrek") == 1

    def test_build_info_says_surf_is_off(self, make_config):
        """With surf_enabled False the build info says SURF is disabled."""
        client = falcon.testing.TestClient(create_app(make_config(surf_enabled=False)))
        assert value(scrape(client), "moontrek_build_info", version=__version__, opencv=cv2.__version__,
                     surf="disabled") == 1

    def test_not_rate_limited(self, make_config):
        """Scrapes spend no rate-limit budget and carry no rate-limit headers."""
        client = falcon.testing.TestClient(create_app(make_config(default_rate_limits=["1 per minute"])))
        for _ in range(5):
            result = client.simulate_get("/api/metrics")
            assert result.status_code == 200 and "X-RateLimit-Limit" not in result.headers

    def test_switched_off(self, make_config):
        """metrics_enabled False: the route is not there (the 404 envelope)."""
        client = falcon.testing.TestClient(create_app(make_config(metrics_enabled=False)))
        result = client.simulate_get("/api/metrics")
        assert result.status_code == 404 and result.json["ok"] is False

    def test_each_app_counts_its_own(self, make_config):
        """Two apps in one process keep separate counts (a registry each)."""
        first = falcon.testing.TestClient(create_app(make_config()))
        second = falcon.testing.TestClient(create_app(make_config()))
        for _ in range(3):
            first.simulate_get("/api/health")
        labels = {"method": "GET", "route": "/api/health", "status": "200"}
        assert value(scrape(first), "moontrek_http_requests_total", **labels) == 3
        assert value(scrape(second), "moontrek_http_requests_total", **labels) == 0


class TestRequests:
    def test_by_route_template_and_status(self, client, pair_files):
        """Requests are counted by method, route template (never the path)
        and status, and timed in the duration histogram."""
        client.simulate_get("/api/health")
        client.simulate_get("/api/health")
        client.simulate_get("/no/such/path")
        post(client, "/api/registrar/orb?pipeline=classic", pair_files)
        post(client, "/api/registrar/FAST", pair_files)
        samples = scrape(client)
        assert value(samples, "moontrek_http_requests_total", method="GET", route="/api/health", status="200") == 2
        assert value(samples, "moontrek_http_requests_total", method="GET", route="unmatched", status="404") == 1
        assert value(samples, "moontrek_http_requests_total", method="POST", route=REG, status="200") == 1
        assert value(samples, "moontrek_http_requests_total", method="POST", route=REG, status="404") == 1
        assert value(samples, "moontrek_http_request_duration_seconds_count", method="POST", route=REG) == 2
        assert value(samples, "moontrek_http_request_duration_seconds_sum", method="POST", route=REG) > 0
        assert not any("/no/such/path" in str(key) or "FAST" in str(key) for key in samples)


class TestRegistrations:
    def test_outcomes_by_algorithm_and_pipeline(self, client, pair_files, monkeypatch):
        """Registrations are counted by algorithm, pipeline and outcome:
        registered, refused (422), invalid (400) and error (500); the
        engine's time goes to the duration histogram."""
        import moontrek.registrar

        assert post(client, "/api/registrar/orb?pipeline=classic", pair_files).status_code == 200
        assert post(client, "/api/registrar/ORB?pipeline=classic", pair_files).status_code == 200
        assert post(client, "/api/registrar/ORB?pipeline=classic",
                    {"user-file": blank(), "model-file": blank()}).status_code == 422
        assert post(client, "/api/registrar/SIFT",
                    {"user-file": b"not an image", "model-file": pair_files["model-file"]}).status_code == 400

        def boom(*args, **kwargs):
            raise RuntimeError("boom")

        monkeypatch.setattr(moontrek.registrar, "register", boom)
        assert post(client, "/api/registrar/AKAZE?pipeline=moon", pair_files).status_code == 500
        samples = scrape(client)
        counted = {
            ("ORB", "classic", "registered"): 2,
            ("ORB", "classic", "refused"): 1,
            ("SIFT", "moon", "invalid"): 1,
            ("AKAZE", "moon", "error"): 1,
        }
        for (algorithm, pipeline, outcome), expected in counted.items():
            assert value(samples, "moontrek_registrations_total", algorithm=algorithm, pipeline=pipeline,
                         outcome=outcome) == expected, (algorithm, pipeline, outcome)
        assert value(samples, "moontrek_registration_duration_seconds_count", algorithm="ORB") == 3
        assert value(samples, "moontrek_registration_slot_wait_seconds_count") == 5
        assert value(samples, "moontrek_registrations_in_progress") == 0

    def test_moon_detections(self, client, pair_files):
        """Moon detections are counted by outcome."""
        post(client, "/api/moon/detect", {"image-file": pair_files["user-file"]})
        post(client, "/api/moon/detect", {"image-file": blank()})
        samples = scrape(client)
        assert value(samples, "moontrek_moon_detections_total", outcome="found") == 1
        assert value(samples, "moontrek_moon_detections_total", outcome="refused") == 1

    def test_busy_slots(self, make_config, pair_files):
        """A request that finds every slot taken is counted as a 503 for
        busy slots, and its wait is in the slot-wait histogram."""
        client = falcon.testing.TestClient(create_app(make_config(max_concurrent_registrations=1,
                                                                  registration_wait_seconds=0.05)))
        resource = client.app._router.find("/api/registrar/ORB")[0]
        assert resource.registrar._slots.acquire(timeout=1)
        try:
            assert post(client, "/api/registrar/ORB", pair_files).status_code == 503
        finally:
            resource.registrar._slots.release()
        samples = scrape(client)
        assert value(samples, "moontrek_registration_busy_total") == 1
        assert value(samples, "moontrek_registration_slot_wait_seconds_count") == 1
        assert value(samples, "moontrek_registration_slot_wait_seconds_sum") >= 0.05
        assert value(samples, "moontrek_registration_slot_wait_seconds_bucket", le="0.01") == 0


class TestRateLimits:
    def test_breaches(self, make_config, pair_files):
        """Each 429 is counted under its rate-limit scope."""
        client = falcon.testing.TestClient(create_app(make_config(default_rate_limits=["1 per minute"])))
        statuses = [post(client, "/api/registrar/FAST", pair_files).status_code for _ in range(3)]
        statuses.append(post(client, "/api/moon/detect", {"x": b"x"}).status_code)
        statuses.append(post(client, "/api/moon/detect", {"x": b"x"}).status_code)
        assert statuses == [404, 429, 429, 400, 429]
        samples = scrape(client)
        assert value(samples, "moontrek_rate_limit_breaches_total", scope="registrar") == 2
        assert value(samples, "moontrek_rate_limit_breaches_total", scope="moon-detect") == 1

    @pytest.mark.parametrize("fail_open", [True, False])
    def test_storage_outage(self, make_config, pair_files, fail_open):
        """An unreachable storage is one outage, and every request that could
        not be checked is counted, failing open or closed."""
        client = falcon.testing.TestClient(create_app(make_config(
            rate_limit_storage_uri="redis://127.0.0.1:9/0", rate_limit_fail_open=fail_open)))
        for _ in range(3):
            status = post(client, "/api/registrar/FAST", pair_files).status_code
            assert status == (404 if fail_open else 503)
        samples = scrape(client)
        assert value(samples, "moontrek_rate_limit_storage_outages_total") == 1
        assert value(samples, "moontrek_rate_limit_storage_errors_total") == 3
