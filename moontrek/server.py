"""Serving the app with waitress (Linux, macOS and Windows alike), with a
graceful shutdown: on SIGTERM or Ctrl+C the server stops accepting
connections, lets the requests in flight finish and their answers go out,
then exits.

waitress answers some requests itself, before the app sees them (a
malformed request line, bad chunking, headers or a body over the limit):
its channel's error task is replaced so that those answers carry the JSON
envelope too.

With ``workers`` > 1 (Linux), :func:`serve` is a supervisor: it binds the
listening socket and runs that many worker processes (``python -m
moontrek.worker``) that all accept from it, restarts any that dies, and on
SIGTERM or SIGINT has them all drain and stop.
"""

import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import waitress
import waitress.channel
import waitress.task
import waitress.utilities
from waitress import wasyncore

from .app import create_app
from .logs import configure_logging
from .metrics import MULTIPROC_ENV, Metrics
from .registration import algorithm_table, surf_pool

__all__ = ["serve", "serve_one", "make_server", "run_until_stopped", "worker_main", "worker_config", "share", "EnvelopeErrorTask"]

logger = logging.getLogger("moontrek.server")
request_logger = logging.getLogger("moontrek.requests")

# How long a shutdown waits for requests in flight before closing anyway.
SHUTDOWN_GRACE_SECONDS = 30.0
_LOOP_TIMEOUT = 0.25
# A worker that dies sooner than this after starting is restarted after a
# growing delay (1 s, 2 s, ... 30 s), so a crash loop does not spin.
_STABLE_SECONDS = 10.0
_MAX_RESTART_DELAY = 30.0
_SUPERVISOR_TICK = 0.2
_BACKLOG = 1024


# -- waitress's own answers, in the envelope -------------------------------------


def protocol_sentence(error, max_body):
    """A sentence for an error waitress found in the request itself."""
    if isinstance(error, waitress.utilities.RequestEntityTooLarge):
        return f"The request body is over the upload limit of {max_body} bytes."
    if isinstance(error, waitress.utilities.RequestHeaderFieldsTooLarge):
        return "The request's headers are too large."
    if isinstance(error, waitress.utilities.BadRequest):
        detail = str(error.body).strip().rstrip(".")
        return f"The request is malformed: {detail[:1].lower()}{detail[1:200]}."
    if isinstance(error, waitress.utilities.ServerNotImplemented):
        detail = str(error.body).strip().rstrip(".")
        return f"The request uses something this server does not implement: {detail[:200]}."
    return "The server hit an unexpected error; it has been logged."


def cors_origin(origin, allow_origins):
    """The Access-Control-Allow-Origin value for a request from ``origin``
    (None when it gets none), by the app's own rule (falcon.CORSMiddleware's):
    "*" for every origin, or the origin itself when it is listed."""
    if origin is None or allow_origins is None:
        return None
    if allow_origins == "*":
        return "*"
    return origin if origin in allow_origins else None


class EnvelopeErrorTask(waitress.task.ErrorTask):
    """waitress's error answer, as the JSON envelope with the same status."""

    def execute(self):
        error = self.request.error
        server = self.channel.server
        message = protocol_sentence(error, server.adj.max_request_body_size - 1)
        body = json.dumps({"ok": False, "status": error.code, "error": message}).encode("utf-8")
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        # A client on another origin (a browser page calling the API) can
        # read no answer without this, so it would see a network error
        # instead of, say, the upload limit.
        allowed = cors_origin(self.request.headers.get("ORIGIN"), getattr(server, "moontrek_cors_origins", None))
        if allowed is not None:
            self.response_headers.append(("Access-Control-Allow-Origin", allowed))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)
        metrics = getattr(server, "moontrek_metrics", None)
        if metrics is not None:
            metrics.protocol_errors.labels(str(error.code)).inc()
        address = self.channel.addr[0] if isinstance(self.channel.addr, tuple) else str(self.channel.addr)
        # A request line that did not parse leaves no method or path.
        method = getattr(self.request, "command", None) or "-"
        path = getattr(self.request, "path", None) or "-"
        request_logger.info("%s %s %s protocol error %s error=%r", method[:20], path[:200], error.code, address,
                            message)


class EnvelopeChannel(waitress.channel.HTTPChannel):
    error_task_class = EnvelopeErrorTask


# -- one process --------------------------------------------------------------------


def make_server(app, config, *, sockets=None, metrics=None):
    """A waitress server for ``app``: on config's host and port, or on
    already listening ``sockets``; its own errors answered in the envelope."""
    where = {"sockets": sockets} if sockets else {"host": config["host"], "port": config["port"]}
    server = waitress.create_server(
        app,
        threads=config["threads"],
        # waitress refuses larger bodies from their Content-Length before
        # reading them, and stops chunked ones as they pass the limit (it
        # refuses at >=, hence the +1: exactly the limit is allowed).
        max_request_body_size=config["max_upload_bytes"] + 1,
        # Uploads are megabytes: reading the socket 64 kB at a time instead
        # of waitress's 8 kB took 10 ms of CPU off a request with a demo
        # pair (2.9 MB), and halved its transfer time on loopback.
        recv_bytes=65536,
        ident="moontrek",
        # waitress 3 drops X-Forwarded-For and its kin unless it trusts the
        # peer itself (one address, no networks). moontrek decides whom to
        # believe (trusted_proxies, moontrek.clients), so it needs the header.
        clear_untrusted_proxy_headers=False,
        **where,
    )
    server.channel_class = EnvelopeChannel
    server.moontrek_metrics = metrics
    server.moontrek_cors_origins = config["cors_allow_origins"]
    return server


def _install_stop_handlers(stop):
    def request_stop(signum, frame):
        if not stop.is_set():
            logger.info("signal %s: finishing requests in flight, then stopping", signum)
        stop.set()

    for name in ("SIGTERM", "SIGINT", "SIGBREAK"):  # SIGBREAK: Ctrl+Break on Windows
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), request_stop)


def serve_one(config, *, sockets=None, rotate_logs=True, label="moontrek"):
    """One waitress process until SIGTERM/SIGINT, then drain and return."""
    metrics = Metrics()
    app = create_app(config, metrics=metrics, rotate_logs=rotate_logs)
    server = make_server(app, config, sockets=sockets, metrics=metrics)
    # waitress 3 gives the port as a string (and the host may be an IPv6 address).
    logger.info(
        "%s listening on http://%s:%s with %d threads and %d registration slots",
        label, server.effective_host, server.effective_port, config["threads"],
        config["max_concurrent_registrations"],
    )
    stop = threading.Event()
    _install_stop_handlers(stop)
    # Only our SURF holds the GIL enough to need them; OpenCV's does not.
    if config["surf_processes"] and algorithm_table(surf_enabled=config["surf_enabled"])["SURF"].implementation == "moontrek":
        surf_pool.start(config["surf_processes"])
        if surf_pool.running():
            logger.info("our SURF runs on %d worker processes", surf_pool.running())
    try:
        run_until_stopped(server, stop)
    finally:
        surf_pool.stop()


def _busy(server):
    return any(channel.requests or channel.total_outbufs_len for channel in list(server.active_channels.values()))


def _accept_backlog(server):
    """Accept the connections already waiting in the listening socket's
    backlog: closing it would reset them, and a proxy would count a request
    it had already sent as failed."""
    for _ in range(_BACKLOG):
        try:
            readable, _, _ = select.select([server.socket], [], [], 0)
        except (OSError, ValueError):
            return
        if not readable:
            return
        server.handle_accept()


def run_until_stopped(server, stop, grace=SHUTDOWN_GRACE_SECONDS):
    """waitress's loop, run here rather than in ``server.run()`` so that the
    shutdown happens in this (the loop's) thread, between iterations."""
    deadline = None
    while True:
        wasyncore.loop(timeout=_LOOP_TIMEOUT, map=server._map, count=1)
        if not stop.is_set():
            continue
        if deadline is None:
            deadline = time.monotonic() + grace
            _accept_backlog(server)
            # Close only the listening socket: open connections keep going.
            wasyncore.dispatcher.close(server)
        if not _busy(server) or time.monotonic() > deadline:
            break
    if _busy(server):
        logger.warning("stopping with requests still in flight after %.0fs", grace)
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
    wasyncore.close_all(server._map)
    logger.info("moontrek stopped")


# -- several processes ----------------------------------------------------------------


def worker_config(config, index, count):
    """The config of worker ``index`` of ``count``: its share of the threads
    and slots, and no second thread for a lone request when there are
    several workers."""
    config = dict(config)
    for key in ("threads", "max_concurrent_registrations"):
        config[key] = share(config[key], index, count)
    if count > 1:
        # A worker sees only its own requests: "alone" in one process may be
        # one of several busy ones, and a second thread per request would
        # then only oversubscribe the cores the other workers are using.
        config["parallel_sides"] = False
        # Each worker has its own GIL already.
        config["surf_processes"] = 0
    return config


def share(total, index, count):
    """Worker ``index``'s share of ``total`` (threads, slots) among ``count``
    workers: the shares add up to ``total``, and none is below one."""
    return max(1, total // count + (1 if index < total % count else 0))


def workers_supported():
    """Several processes on one socket need Linux: the socket is passed to
    child processes by descriptor, and fork-safety of OpenCV elsewhere (macOS)
    is not something to rely on."""
    return sys.platform.startswith("linux")


def serve(config):
    """Run the app until SIGTERM/SIGINT: one process, or ``workers`` of them."""
    workers = config["workers"]
    if workers > 1 and not workers_supported():
        configure_logging(config)
        logger.warning("workers is %d, but several worker processes need Linux: running one process on %s",
                       workers, sys.platform)
        workers = 1
    if workers == 1:
        serve_one(config)
        return
    Supervisor(config, workers).run()


class _Worker:
    def __init__(self, index):
        self.index = index
        self.process = None
        self.started = 0.0
        self.failures = 0
        self.restart_at = None


class Supervisor:
    """Binds the socket, runs the worker processes, restarts dead ones, and
    stops them all on SIGTERM/SIGINT (each drains its requests first)."""

    def __init__(self, config, workers):
        self.config = config
        self.count = workers
        self.workers = [_Worker(index) for index in range(workers)]
        self.stop = threading.Event()
        self.log_handler = None
        self.metrics_dir = None
        self._own_metrics_dir = False

    def run(self):
        logger_ = configure_logging(self.config)
        self.log_handler = next(
            (h for h in logger_.handlers if hasattr(h, "doRollover")), None
        )
        self.sock = socket.create_server((self.config["host"], self.config["port"]), backlog=_BACKLOG)
        self.sock.set_inheritable(True)
        self._prepare_metrics_dir()
        host, port = self.sock.getsockname()[:2]
        logger.info(
            "moontrek listening on http://%s:%s with %d worker processes (%d threads and %d registration slots "
            "in all)", host, port, self.count, self.config["threads"], self.config["max_concurrent_registrations"],
        )
        _install_stop_handlers(self.stop)
        try:
            for worker in self.workers:
                self._start(worker)
            while not self.stop.wait(_SUPERVISOR_TICK):
                self._watch()
                self._rotate_log()
            # The workers hold the socket now: once the last has taken its
            # queued connections and closed it, new ones are refused (and a
            # proxy tries elsewhere) instead of waiting on a socket that
            # nobody accepts from.
            self.sock.close()
            self._stop_all()
        finally:
            for worker in self.workers:
                if worker.process is not None and worker.process.poll() is None:
                    worker.process.kill()
                    worker.process.wait()
            self.sock.close()
            if self._own_metrics_dir:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)
        logger.info("moontrek stopped")

    def _prepare_metrics_dir(self):
        folder = os.environ.get(MULTIPROC_ENV)
        if folder:
            # The operator's folder: clear the last run's files, as
            # prometheus-client asks, but leave the folder.
            Path(folder).mkdir(parents=True, exist_ok=True)
            for stale in Path(folder).glob("*.db"):
                stale.unlink()
            self.metrics_dir = folder
        else:
            self.metrics_dir = tempfile.mkdtemp(prefix="moontrek-metrics-")
            self._own_metrics_dir = True

    def _start(self, worker):
        environ = {**os.environ, MULTIPROC_ENV: self.metrics_dir}
        command = [sys.executable, "-m", "moontrek.worker", "--fd", str(self.sock.fileno()),
                   "--index", str(worker.index), "--count", str(self.count), "--parent", str(os.getpid())]
        worker.process = subprocess.Popen(command, stdin=subprocess.PIPE, pass_fds=[self.sock.fileno()], env=environ)
        worker.process.stdin.write(json.dumps(self.config).encode("utf-8"))
        worker.process.stdin.close()
        worker.started = time.monotonic()
        worker.restart_at = None
        logger.info("worker %d started (pid %d)", worker.index, worker.process.pid)

    def _watch(self):
        now = time.monotonic()
        for worker in self.workers:
            if worker.restart_at is not None:
                if now >= worker.restart_at:
                    self._start(worker)
                continue
            status = worker.process.poll()
            if status is None:
                continue
            from prometheus_client import multiprocess

            # Its live gauges (registrations in progress) no longer count.
            multiprocess.mark_process_dead(worker.process.pid, self.metrics_dir)
            worker.failures = worker.failures + 1 if now - worker.started < _STABLE_SECONDS else 0
            delay = 0.0 if worker.failures == 0 else min(_MAX_RESTART_DELAY, 2.0 ** (worker.failures - 1))
            logger.error("worker %d (pid %d) exited with status %s; restarting it in %.0fs",
                         worker.index, worker.process.pid, status, delay)
            worker.restart_at = now + delay

    def _rotate_log(self):
        handler = self.log_handler
        max_bytes = self.config["log_max_bytes"]
        try:
            if handler is not None and os.path.getsize(handler.baseFilename) >= max_bytes:
                # The workers' handlers notice the new file and reopen it.
                handler.doRollover()
        except OSError:
            pass

    def _stop_all(self):
        running = [w.process for w in self.workers if w.restart_at is None and w.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS + 10
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("worker pid %d did not stop in time; killing it", process.pid)
                process.kill()
                process.wait()
        from prometheus_client import multiprocess

        for worker in self.workers:
            if worker.process is not None:
                multiprocess.mark_process_dead(worker.process.pid, self.metrics_dir)


def worker_main(argv=None):
    """A worker process of ``serve --workers N``: the checked config arrives
    as JSON on stdin, the listening socket as an inherited descriptor."""
    import argparse

    from .config import ConfigError, validate_config

    parser = argparse.ArgumentParser(prog="moontrek.worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True, help="the supervisor's process id")
    args = parser.parse_args(argv)
    try:
        config = validate_config(json.loads(sys.stdin.read()), source="worker config")
    except (ConfigError, ValueError) as exc:
        print(f"moontrek worker: {exc}", file=sys.stderr)
        return 2
    config = worker_config(config, args.index, args.count)
    _stop_with_parent(args.parent)
    sock = socket.socket(fileno=args.fd)
    serve_one(config, sockets=[sock], rotate_logs=False, label=f"worker {args.index}")
    return 0


def _stop_with_parent(parent):
    """Ask Linux to send this worker SIGTERM (it drains) if the supervisor
    dies without stopping it, e.g. killed with SIGKILL."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the supervisor was already gone
        os.kill(os.getpid(), signal.SIGTERM)

