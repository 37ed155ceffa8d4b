"""`moontrek serve --workers N`: several real processes on one socket."""

import json
import os
import re
import signal
import sys
import threading
import time

import pytest

from moontrek import server as server_module
from moontrek.config import ConfigError, validate_config
from tests.conftest import multipart
from tests.servers import Serve, alive, metric_value, request

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="several workers need Linux")

STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


def worker_pids(log):
    """{index: pid} of the workers started last, from the supervisor's lines."""
    return {int(index): int(pid) for index, pid in STARTED.findall(log)}


@pytest.fixture
def workers(tmp_path):
    """`moontrek serve --workers 2`, no rate limits, both workers listening."""
    serve = Serve(tmp_path / "serve", {"default_rate_limits": [], "registration_wait_seconds": 300,
                                       "max_concurrent_registrations": 2, "threads": 4},
                  "--workers", "2", env={"TMPDIR": str(tmp_path)})
    serve.wait_healthy()
    serve.wait_for_log("worker 0 listening")
    serve.wait_for_log("worker 1 listening")
    yield serve
    serve.stop()


class TestShares:
    def test_shares_add_up(self):
        """Each worker gets its share of threads and slots; the shares add
        up to the configured totals and none is below one."""
        for total in range(1, 12):
            for count in range(1, 6):
                shares = [server_module.share(total, index, count) for index in range(count)]
                assert min(shares) >= 1
                if total >= count:
                    assert sum(shares) == total
        assert [server_module.share(4, i, 2) for i in range(2)] == [2, 2]
        assert [server_module.share(3, i, 2) for i in range(2)] == [2, 1]

    def test_worker_config(self, make_config):
        """A worker's config: its shares, and parallel_sides off when there
        are several workers (each sees only its own load); one worker keeps
        the setting."""
        config = make_config(threads=4, max_concurrent_registrations=2, parallel_sides=True)
        several = [server_module.worker_config(config, i, 2) for i in range(2)]
        assert [(c["threads"], c["max_concurrent_registrations"], c["parallel_sides"]) for c in several] == [
            (2, 1, False), (2, 1, False)
        ]
        assert server_module.worker_config(config, 0, 1)["parallel_sides"] is True
        assert config["parallel_sides"] is True  # the supervisor's own config is left alone
        # Each worker process has its own GIL: no SURF processes beside them.
        assert [c["surf_processes"] for c in several] == [0, 0]
        assert server_module.worker_config(config, 0, 1)["surf_processes"] == config["surf_processes"]

    def test_one_process_where_unsupported(self, make_config, monkeypatch):
        """Where several processes are not supported, serve says so and runs one."""
        import logging

        class Recorder(logging.Handler):
            def emit(self, record):
                messages.append(record.getMessage())

        ran, messages = [], []
        monkeypatch.setattr(server_module, "workers_supported", lambda: False)
        monkeypatch.setattr(server_module, "serve_one", lambda config: ran.append(config))
        recorder = Recorder()
        server_module.logger.addHandler(recorder)
        try:
            server_module.serve(make_config(workers=3, default_rate_limits=[]))
        finally:
            server_module.logger.removeHandler(recorder)
        assert len(ran) == 1
        assert any("running one process" in message for message in messages)


class TestMemoryStorageRefused:
    def test_config_refuses_memory_with_workers(self):
        """workers > 1 with rate limits in memory:// is a config error naming redis://."""
        with pytest.raises(ConfigError, match="redis://"):
            validate_config({"workers": 2}, source="test")
        validate_config({"workers": 2, "default_rate_limits": []}, source="test")
        validate_config({"workers": 2, "rate_limit_storage_uri": "redis://127.0.0.1:6379/0"}, source="test")
        with pytest.raises(ConfigError, match="workers"):
            validate_config({"workers": 0}, source="test")

    def test_serve_refuses_at_start_up(self, tmp_path):
        """`moontrek serve --workers 2` on the default memory:// storage stops
        at start-up with exit status 2 and a message naming redis://."""
        serve = Serve(tmp_path, {}, "--workers", "2")
        assert serve.process.wait(timeout=60) == 2
        serve.stop()
        assert "redis://" in serve.console() and "workers" in serve.console()


class TestWorkers:
    def test_requests_served_by_several_processes(self, workers):
        """Requests are answered by both worker processes (the log's process
        ids), and the metrics add up every worker's counts."""
        log = workers.log_text()
        pids = set(worker_pids(log).values())
        assert len(pids) == 2
        # Their shares of 4 threads and 2 registration slots.
        for index in (0, 1):
            assert f"worker {index} listening on http://127.0.0.1:{workers.port} with 2 threads and 1 " in log
        sent = 0
        deadline = time.monotonic() + 60
        served_by = set()
        while served_by != pids:
            assert time.monotonic() < deadline, f"only {served_by} of {pids} answered"
            threads = [threading.Thread(target=request, args=(workers.port, "GET", "/api/registrar"))
                       for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            sent += len(threads)
            served_by = {int(pid) for pid in re.findall(r"moontrek\.requests\[(\d+)\]: GET /api/registrar 200",
                                                         workers.log_text())}
        assert metric_value(workers.port, "moontrek_http_requests_total", route="/api/registrar") == sent

    def test_killed_worker_is_restarted(self, workers):
        """A worker killed with SIGKILL is logged and replaced by a new
        process, and the server keeps answering."""
        before = worker_pids(workers.log_text())
        os.kill(before[0], signal.SIGKILL)
        log = workers.wait_for_log(f"worker 0 (pid {before[0]}) exited with status -9; restarting")
        deadline = time.monotonic() + 60
        while worker_pids(log)[0] == before[0]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
            log = workers.log_text()
        replacement = worker_pids(log)[0]
        workers.wait_for_log(f"moontrek.server[{replacement}]: worker 0 listening")
        assert alive(replacement) and alive(before[1]) and not alive(before[0])
        assert request(workers.port, "GET", "/api/health")[0] == 200

    def test_sigterm_drains_and_stops_every_process(self, workers, tmp_path):
        """SIGTERM to the supervisor: the registration in flight is answered,
        every worker stops, the supervisor exits 0 and removes its metrics
        folder."""
        from moontrek.synthetic import encode, make_pair, render_moon

        pids = worker_pids(workers.log_text()).values()
        assert list(tmp_path.glob("moontrek-metrics-*"))
        model = render_moon(1600, seed=11)
        pair = make_pair(model, angle=20.0, scale=1.0, user_size=(1600, 1600))
        body, headers = multipart({"user-file": encode(pair.user), "model-file": encode(model)})
        answers = []
        worker = threading.Thread(target=lambda: answers.append(
            request(workers.port, "POST", "/api/registrar/SIFT?pipeline=classic", body, headers)))
        worker.start()
        deadline = time.monotonic() + 60
        while metric_value(workers.port, "moontrek_registrations_in_progress") < 1:
            assert time.monotonic() < deadline, "the registration never started"
            time.sleep(0.05)
        workers.process.send_signal(signal.SIGTERM)
        worker.join(120)
        assert answers and answers[0][0] == 200, answers
        assert json.loads(answers[0][2])["ok"] is True
        assert workers.process.wait(timeout=60) == 0
        assert not any(alive(pid) for pid in pids)
        assert not list(tmp_path.glob("moontrek-metrics-*"))
        log = workers.log_text()
        assert log.count("moontrek stopped") == 3
        assert "Traceback" not in log and "Logging error" not in workers.console()

    def test_workers_stop_when_the_supervisor_is_killed(self, workers):
        """A supervisor killed with SIGKILL (no chance to stop them) leaves no
        worker behind: Linux sends each one SIGTERM and it drains and exits."""
        pids = list(worker_pids(workers.log_text()).values())
        workers.process.kill()
        workers.process.wait(timeout=30)
        deadline = time.monotonic() + 60
        while any(alive(pid) for pid in pids):
            assert time.monotonic() < deadline, "a worker outlived its supervisor"
            time.sleep(0.05)


class TestSharedLog:
    def test_supervisor_rotates_and_no_line_is_lost(self, tmp_path):
        """Every worker writes to the one log file and only the supervisor
        rotates it: after several rotations every request's line is in the
        log or its rotated copies."""
        serve = Serve(tmp_path, {"default_rate_limits": [], "log_max_bytes": 4000, "log_backup_count": 50},
                      "--workers", "2")
        try:
            serve.wait_healthy()
            serve.wait_for_log("worker 1 listening")
            sent = 0
            deadline = time.monotonic() + 60
            while len(list(tmp_path.glob("moontrek.log.*"))) < 2:
                assert time.monotonic() < deadline, "the log was never rotated"
                assert request(serve.port, "GET", "/api/registrar")[0] == 200
                sent += 1
            for _ in range(20):
                assert request(serve.port, "GET", "/api/registrar")[0] == 200
                sent += 1
        finally:
            assert serve.stop() == 0
        text = "".join(path.read_text() for path in tmp_path.glob("moontrek.log*"))
        assert text.count("GET /api/registrar 200") == sent
        assert "moontrek stopped" in serve.log_text()  # still written after the rotations
