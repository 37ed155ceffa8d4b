"""Hostile and broken input: every case a clear 4xx envelope, logged once,
and the server healthy afterwards."""

import pytest

from tests.hostile import corpus, status_ok

CASES = corpus()


class TestHostileInput:
    @pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
    def test_clear_answer(self, client, config, case):
        """The case gets the error envelope with a 4xx status (never a 500),
        one log line, and the server answers the next request."""
        from pathlib import Path

        name, method, path, body, headers, expected = case
        result = client.simulate_request(method, path, body=body, headers=headers)
        assert status_ok(result.status_code, expected), (name, result.status_code, result.text[:300])
        assert result.status_code < 500
        if method != "HEAD" and result.status_code != 200:
            assert result.json["ok"] is False and result.json["status"] == result.status_code
            assert 10 < len(result.json["error"]) < 400
        log = Path(config["log_filepath"]).read_text(encoding="utf-8", errors="replace")
        request_lines = [line for line in log.splitlines() if "moontrek.requests" in line]
        assert len(request_lines) == 1 and f" {result.status_code} " in request_lines[0]
        assert "Traceback" not in log
        assert client.simulate_get("/api/health").status_code == 200

    def test_messages_say_what_is_wrong(self, client):
        """A file that is not an image says so; a bomb names its pixel count and the limit."""
        by_name = {case[0]: case for case in CASES}

        def error(name):
            _, method, path, body, headers, _ = by_name[name]
            return client.simulate_request(method, path, body=body, headers=headers).json["error"]

        assert "30000x30000 = 900000000 pixels" in error("decompression bomb PNG")
        assert "limit of 50000000" in error("decompression bomb JPEG")
        assert "8000x8000" in error("honest 8000x8000 photo over the pixel limit")
        assert "not an image" in error("PDF named .png")
        assert "damaged PNG" in error("truncated PNG")
        assert "1x1" in error("1x1 image")
        assert "more than once" in error("field sent twice")


class TestBusy:
    def test_503_when_no_slot_frees_up(self, make_config, pair_files, monkeypatch):
        """With every registration slot taken, a request that cannot start
        within the configured wait gets 503 with Retry-After."""
        import threading

        import falcon.testing

        import moontrek.registrar
        from moontrek.app import create_app
        from tests.conftest import multipart

        release, entered = threading.Event(), threading.Event()
        real_register = moontrek.registrar.register

        def slow_register(*args, **kwargs):
            entered.set()
            release.wait(10)
            return real_register(*args, **kwargs)

        monkeypatch.setattr(moontrek.registrar, "register", slow_register)
        config = make_config(max_concurrent_registrations=1, registration_wait_seconds=0.2)
        client = falcon.testing.TestClient(create_app(config))
        body, headers = multipart(pair_files)
        first = []
        worker = threading.Thread(
            target=lambda: first.append(client.simulate_post("/api/registrar/ORB", body=body, headers=headers))
        )
        worker.start()
        # The first request must hold the only slot before the second asks.
        assert entered.wait(30)
        try:
            busy = client.simulate_post("/api/registrar/ORB", body=body, headers=headers)
        finally:
            release.set()
            worker.join(30)
        assert busy.status_code == 503
        assert busy.json["status"] == 503 and "busy" in busy.json["error"]
        assert int(busy.headers["Retry-After"]) >= 1
        assert first[0].status_code == 200
