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


def metric_value(port, name):
    """A metric's value (summed over its label sets) from GET /api/metrics."""
    _, _, raw = request(port, "GET", "/api/metrics")
    values = [float(line.rsplit(" ", 1)[1]) for line in raw.decode().splitlines()
              if line.startswith(name) and (line[len(name)] in " {")]
    return sum(values)


def wait_for_metric(port, name, value, timeout=60):
    """Poll the metrics until ``name`` reaches ``value`` (bounded)."""
    deadline = time.monotonic() + timeout
    while metric_value(port, name) < value:
        assert time.monotonic() < deadline, f"{name} never reached {value}"
        time.sleep(0.05)


def assert_peak_memory_under(process, megabytes):
    """The process's peak resident memory (Linux's VmHWM; skipped elsewhere)."""
    from pathlib import Path

    status = Path(f"/proc/{process.pid}/status")
    if not status.exists():
        return
    peak_kb = int(next(line for line in status.read_text().splitlines() if line.startswith("VmHWM")).split()[1])
    assert peak_kb < megabytes * 1024, f"peak resident memory {peak_kb / 1024:.0f} MB"


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
        # Generous: the tests that queue registrations must not get a 503
        # because the machine is loaded.
        "    'registration_wait_seconds': 300,\n"
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
    yield port, tmp_path, process
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=30)
    process.stdout.close()


class TestWaitress:
    def test_console_is_clean(self, server):
        """`moontrek serve` prints its listening line and no logging error or
        traceback, on the console as in the log file (waitress 3 gives the
        port as a string: a %d once broke the line)."""
        port, folder, process = server
        assert request(port, "GET", "/api/health")[0] == 200
        process.terminate()
        assert process.wait(timeout=30) == 0
        console = process.stdout.read().decode(errors="replace")
        log = (folder / "logs" / "moontrek.log").read_text()
        for text in (console, log):
            assert f"listening on http://127.0.0.1:{port} with" in text
            assert "Logging error" not in text and "Traceback" not in text
            assert "moontrek stopped" in text

    def test_real_multipart_request(self, server, pair_files):
        """A real multipart POST over HTTP gets the homography, and the
        request is logged to the configured file."""
        port, folder, _ = server
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
        port, _, _ = server
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.putrequest("POST", "/api/registrar/SIFT")
            connection.putheader("Content-Type", "multipart/form-data; boundary=x")
            connection.putheader("Content-Length", str(4_100_000))
            connection.endheaders()
            assert connection.getresponse().status == 413
        finally:
            connection.close()

    def test_graceful_shutdown(self, server):
        """On SIGTERM the server stops accepting, lets the registration in
        flight finish and answer, and exits cleanly."""
        import signal
        import threading

        from moontrek.synthetic import encode, make_pair, render_moon

        port, folder, process = server
        model = render_moon(1600, seed=11)
        pair = make_pair(model, angle=20.0, scale=1.0, user_size=(1600, 1600))
        body, headers = multipart({"user-file": encode(pair.user), "model-file": encode(model)})
        answers = []

        def slow_request():
            answers.append(request(port, "POST", "/api/registrar/SIFT?pipeline=classic", body, headers))

        worker = threading.Thread(target=slow_request)
        worker.start()
        log = folder / "logs" / "moontrek.log"
        # Signal once the registration holds its slot (the metrics say so),
        # not after a guessed sleep.
        wait_for_metric(port, "moontrek_registrations_in_progress", 1.0)
        process.send_signal(signal.SIGTERM)
        worker.join(timeout=60)
        assert answers and answers[0][0] == 200, answers
        assert process.wait(timeout=30) == 0
        text = log.read_text()
        assert "finishing requests in flight" in text and "moontrek stopped" in text
        with pytest.raises(OSError):
            request(port, "GET", "/api/health")


    def test_hostile_corpus_over_http(self, server):
        """Every hostile case over real HTTP gets its 4xx, the server stays
        up, and its peak resident memory stays under 1.5 GB."""
        from tests.hostile import corpus, status_ok

        port, _, process = server
        for name, method, path, body, headers, expected in corpus():
            if len(body) > 4_000_000:
                continue  # this server's upload limit is 4 MB: test_oversized_body covers it
            status, _, _ = request(port, method, path, body or None, headers)
            assert status_ok(status, expected) and status < 500, (name, status)
            assert request(port, "GET", "/api/health")[0] == 200
        assert_peak_memory_under(process, 1.5 * 1024)

    def test_memory_bounded_with_largest_images(self, server):
        """Four concurrent registrations of 7000x7000 photos (49 Mpx, just
        under the default 50 Mpx limit) all succeed while at most
        max_concurrent_registrations run at once, and the server's peak
        resident memory stays under 1.5 GB."""
        import threading

        import cv2

        from moontrek.synthetic import encode, make_pair, render_moon

        port, _, process = server
        model = render_moon(1200, seed=3)
        pair = make_pair(model, angle=30.0, scale=1.0, user_size=(1200, 1200))
        user = cv2.resize(pair.user, (7000, 7000), interpolation=cv2.INTER_LINEAR)
        body, headers = multipart({"user-file": encode(user, ".jpg", quality=90), "model-file": encode(model)})
        del user
        statuses = []

        def post():
            statuses.append(request(port, "POST", "/api/registrar/ORB", body, headers)[0])

        threads = [threading.Thread(target=post) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert statuses == [200] * 4
        assert_peak_memory_under(process, 1.5 * 1024)


class TestForwardedOverWaitress:
    def test_trusted_proxy_header_reaches_the_app(self, make_config):
        """Under real waitress (which by default drops X-Forwarded-For from
        peers it does not trust itself) the header reaches moontrek, which
        believes it from a trusted proxy only."""
        from tests.servers import in_process
        from tests.servers import request as send

        config = make_config(port=0, trusted_proxies=["127.0.0.2"])
        with in_process(config) as port:
            forged = {"X-Forwarded-For": "198.51.100.7"}
            assert send(port, "GET", "/api/health", headers=forged, source="127.0.0.2")[0] == 200
            assert send(port, "GET", "/api/health", headers=forged, source="127.0.0.3")[0] == 200
        from pathlib import Path

        log = Path(config["log_filepath"]).read_text()
        lines = [line for line in log.splitlines() if "GET /api/health" in line]
        assert lines[0].endswith(" 198.51.100.7") and lines[1].endswith(" 127.0.0.3")


def _descendants(pid):
    """Every process below ``pid`` (the fork server's workers are its grandchildren)."""
    from pathlib import Path

    found = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return found
    for task in tasks:
        try:
            children = (task / "children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended, or a process reaped, meanwhile
        for child in children:
            found += [int(child), *_descendants(int(child))]
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the SURF workers run on Linux only")
def test_surf_runs_on_worker_processes_that_stop_with_the_server(tmp_path, pair_files):
    """With ``surf_processes`` the served SURF answers from worker processes,
    and a SIGTERM ends them with the server, cleanly."""
    from tests.servers import Serve, alive

    serve = Serve(tmp_path, {"surf_processes": 2, "default_rate_limits": []}).wait_healthy()
    try:
        serve.wait_for_log("our SURF runs on 2 worker processes")
        body, headers = multipart(pair_files)
        status, _, raw = request(serve.port, "POST", "/api/registrar/SURF", body, headers)
        assert status == 200, raw
        helpers = _descendants(serve.process.pid)
        assert len(helpers) >= 3  # the fork server and its two workers (and a resource tracker)
    finally:
        assert serve.stop() == 0
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in helpers)
    assert "Traceback" not in serve.console() and "moontrek stopped" in serve.log_text()
