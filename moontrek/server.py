"""Serving the app with waitress (Linux, macOS and Windows alike), with a
graceful shutdown: on SIGTERM or Ctrl+C the server stops accepting
connections, lets the requests in flight finish and their answers go out,
then exits."""

import logging
import signal
import threading
import time

import waitress
from waitress import wasyncore

from .app import create_app

__all__ = ["serve", "run_until_stopped"]

logger = logging.getLogger("moontrek.server")

# How long a shutdown waits for requests in flight before closing anyway.
SHUTDOWN_GRACE_SECONDS = 30.0
_LOOP_TIMEOUT = 0.25


def serve(config):
    """Run the app under waitress until SIGTERM/SIGINT, then drain and return."""
    app = create_app(config)
    server = waitress.create_server(
        app,
        host=config["host"],
        port=config["port"],
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
    )
    logger.info(
        "moontrek listening on http://%s:%d with %d threads",
        server.effective_host,
        server.effective_port,
        config["threads"],
    )
    stop = threading.Event()

    def request_stop(signum, frame):
        if not stop.is_set():
            logger.info("signal %s: finishing requests in flight, then stopping", signum)
        stop.set()

    for name in ("SIGTERM", "SIGINT", "SIGBREAK"):  # SIGBREAK: Ctrl+Break on Windows
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), request_stop)
    run_until_stopped(server, stop)


def _busy(server):
    return any(channel.requests or channel.total_outbufs_len for channel in list(server.active_channels.values()))


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
            # Close only the listening socket: open connections keep going.
            wasyncore.dispatcher.close(server)
        if not _busy(server) or time.monotonic() > deadline:
            break
    if _busy(server):
        logger.warning("stopping with requests still in flight after %.0fs", grace)
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
    wasyncore.close_all(server._map)
    logger.info("moontrek stopped")
