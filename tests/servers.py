"""Real `python -m moontrek serve` processes for the tests: free loopback
ports, config files in a temporary folder, bounded start-up waits; and
moontrek's waitress server run in the test's own process."""

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port(host="127.0.0.1"):
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def request(port, method, path, body=None, headers=None, *, host="127.0.0.1", source=None, timeout=60):
    """One HTTP request on its own connection; (status, headers, body).
    ``source`` binds the client's side to a loopback address of its own."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout,
                                            source_address=(source, 0) if source else None)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


@contextlib.contextmanager
def in_process(config, metrics=None):
    """moontrek's waitress server for a validated ``config`` (its error
    task included), in a thread of this process on the config's port (0: a
    free one); yields the port, and stops the server on leaving."""
    from moontrek.app import create_app
    from moontrek.server import make_server, run_until_stopped

    server = make_server(create_app(config, metrics=metrics), config, metrics=metrics)
    stop = threading.Event()
    loop = threading.Thread(target=run_until_stopped, args=(server, stop), kwargs={"grace": 5})
    loop.start()
    try:
        yield int(server.effective_port)
    finally:
        stop.set()
        loop.join(30)


def alive(pid):
    """Whether process ``pid`` runs (a zombie waiting to be reaped does
    not). It may be reaped between any two reads of /proc: then it is gone."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def write_config(path, config):
    path.write_text("CONFIG = " + repr(config) + "\n")
    return path


class Serve:
    """`python -m moontrek serve --config FILE --port PORT [args]` with its
    console captured to a file (read it with ``console()``)."""

    def __init__(self, folder, config, *args, port=None, env=None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.log = self.folder / "moontrek.log"
        self.config = write_config(self.folder / "config.py", {"log_filepath": str(self.log), **config})
        self.console_path = self.folder / "console.txt"
        self._console = open(self.console_path, "wb")
        environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moontrek", "serve", "--config", str(self.config), "--port", str(self.port), *args],
            stdout=self._console, stderr=subprocess.STDOUT, cwd=self.folder, env=environ,
        )

    def wait_healthy(self, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            try:
                if request(self.port, "GET", "/api/health", timeout=5)[0] == 200:
                    return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop(kill=True)
                raise RuntimeError(f"the server did not start:\n{self.console()}")
            time.sleep(0.1)

    def console(self):
        return self.console_path.read_text(errors="replace")

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for_log(self, text, timeout=60):
        """Wait (bounded) until ``text`` is in the log file; return the log."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log_text()
            if text in log:
                return log
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared in the log:\n{log[-3000:]}")
            time.sleep(0.05)

    def stop(self, kill=False, timeout=60):
        if self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            self.process.wait(timeout=timeout)
        self._console.close()
        return self.process.returncode


def metric_value(port, name, **labels):
    """A metric's value from GET /api/metrics, summed over the label sets
    that have ``labels``."""
    _, _, raw = request(port, "GET", "/api/metrics")
    total = 0.0
    for line in raw.decode().splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        key, value = line.rsplit(" ", 1)
        if key != name and not key.startswith(name + "{"):
            continue
        if all(f'{label}="{wanted}"' in key for label, wanted in labels.items()):
            total += float(value)
    return total
