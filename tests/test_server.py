"""The real thing: `moontrek serve` under waitress, spoken to over HTTP."""

import http.client
import json
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import multipart


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(port, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


@pytest.fixture
def server(tmp_path):
    """A `python -m moontrek serve` process on a free loopback port."""
    port = free_port()
    config = tmp_path / "config.py"
    config.write_text(
        "CONFIG = {\n"
        f"    'log_filepath': {str(tmp_path / 'logs' / 'moontrek.log')!r},\n"
        "    'default_rate_limits': ['100 per hour'],\n"
        "    'max_upload_bytes': 4000000,\n"
        "}\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "moontrek", "serve", "--config", str(config), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if request(port, "GET", "/api/health")[0] == 200:
                break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the server did not start: {process.stdout.read().decode(errors='replace')}")
        time.sleep(0.1)
    yield port, tmp_path
    process.terminate()
    process.wait(timeout=10)
    process.stdout.close()


class TestWaitress:
    def test_real_multipart_request(self, server, pair_files):
        """A real multipart POST over HTTP gets the homography, and the
        request is logged to the configured file."""
        port, folder = server
        body, headers = multipart(pair_files)
        status, response_headers, raw = request(port, "POST", "/pyapi/registrar/ORB", body, headers)
        payload = json.loads(raw)
        assert status == 200 and payload["ok"] is True, payload
        assert len(payload["payload"]["homography_matrix"]) == 3
        assert response_headers["X-RateLimit-Limit"] == "100"
        log = (folder / "logs" / "moontrek.log").read_text()
        assert "POST /pyapi/registrar/ORB 200" in log

    def test_oversized_body_refused_before_it_is_sent(self, server):
        """A body whose Content-Length is over the upload limit is refused with
        413 as soon as the headers arrive: the server does not wait for it."""
        port, _ = server
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.putrequest("POST", "/api/registrar/SIFT")
            connection.putheader("Content-Type", "multipart/form-data; boundary=x")
            connection.putheader("Content-Length", str(4_100_000))
            connection.endheaders()
            assert connection.getresponse().status == 413
        finally:
            connection.close()
