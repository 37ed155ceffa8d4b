"""Prometheus metrics, served at ``GET /api/metrics``.

One ``Metrics`` object per app, holding its own ``CollectorRegistry``: tests
build many apps in one process and each sees only its own counts. Labels
take few, bounded values (a route template, a status, an algorithm, a
pipeline, an outcome), never a path or an address.

When several worker processes serve (``moontrek serve --workers N``), the
supervisor points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before
starting them; prometheus-client then keeps every value in files there, and
a scrape of any worker adds up all of them (``multiprocess`` mode).
"""

import os

import cv2
import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from . import __version__

__all__ = ["Metrics", "MetricsResource", "CONTENT_TYPE", "multiprocess_dir", "OUTCOMES"]

# The classic text format, which every Prometheus reads (what
# generate_latest writes); newer clients call their default "1.0.0".
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "moontrek"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: A registration's outcome: it answered 200, was refused with the
#: documented 422, was refused for its input (400, 413), or hit an
#: unexpected error (500).
OUTCOMES = ("registered", "refused", "invalid", "error")

# Requests are milliseconds (health, lists) to seconds (registrations of
# large photos): buckets from 5 ms to a minute.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def multiprocess_dir():
    """The multiprocess folder when several processes share the metrics, else None."""
    return os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower()) or None


class _BuildInfo:
    """``moontrek_build_info``, a constant 1 with the build in its labels.

    A collector rather than a stored Gauge: it is the same in every process,
    so it is computed at scrape time and never written to the multiprocess
    files (where prometheus-client's Info type does not work).
    """

    def __init__(self, surf):
        self.labels = {"version": __version__, "opencv": cv2.__version__, "surf": surf}

    def collect(self):
        family = GaugeMetricFamily(
            f"{PREFIX}_build_info", "The moontrek build: version, OpenCV version, which SURF serves.",
            labels=list(self.labels),
        )
        family.add_metric(list(self.labels.values()), 1)
        yield family


class Metrics:
    """Every metric moontrek keeps, and the text a scrape gets."""

    def __init__(self, *, surf="moontrek"):
        self.registry = CollectorRegistry(auto_describe=True)
        self.build_info = _BuildInfo(surf)
        self.registry.register(self.build_info)
        registry = self.registry

        self.requests = Counter(
            f"{PREFIX}_http_requests", "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"], registry=registry,
        )
        self.request_duration = Histogram(
            f"{PREFIX}_http_request_duration_seconds", "Time to answer an HTTP request, by method and route template.",
            ["method", "route"], buckets=REQUEST_BUCKETS, registry=registry,
        )
        self.protocol_errors = Counter(
            f"{PREFIX}_http_protocol_errors", "Requests refused by the HTTP server before the app saw them "
            "(malformed request, bad chunking, headers or body over the limit), by status.",
            ["status"], registry=registry,
        )
        self.registrations = Counter(
            f"{PREFIX}_registrations", "Registrations by algorithm, pipeline and outcome "
            "(registered, refused: 422, invalid: 400/413, error: 500).",
            ["algorithm", "pipeline", "outcome"], registry=registry,
        )
        self.registration_duration = Histogram(
            f"{PREFIX}_registration_duration_seconds", "Time the engine took for one registration, by algorithm.",
            ["algorithm"], buckets=REQUEST_BUCKETS, registry=registry,
        )
        self.moon_detections = Counter(
            f"{PREFIX}_moon_detections", "Moon detections by outcome (found, refused: 422, invalid, error).",
            ["outcome"], registry=registry,
        )
        self.slot_wait = Histogram(
            f"{PREFIX}_registration_slot_wait_seconds", "Time a registration or detection waited for a free slot "
            "(including the waits that ended in 503).", buckets=WAIT_BUCKETS, registry=registry,
        )
        self.busy = Counter(
            f"{PREFIX}_registration_busy", "Requests answered 503 because no registration slot freed up in time.",
            registry=registry,
        )
        self.in_progress = Gauge(
            f"{PREFIX}_registrations_in_progress", "Registrations and detections holding a slot now.",
            registry=registry, multiprocess_mode="livesum",
        )
        self.rate_limit_breaches = Counter(
            f"{PREFIX}_rate_limit_breaches", "Requests refused with 429, by rate-limit scope.",
            ["scope"], registry=registry,
        )
        self.storage_outages = Counter(
            f"{PREFIX}_rate_limit_storage_outages", "Times the rate-limit storage became unreachable.",
            registry=registry,
        )
        self.storage_errors = Counter(
            f"{PREFIX}_rate_limit_storage_errors", "Requests whose rate limit could not be checked "
            "because the storage was unreachable.", registry=registry,
        )

    def exposition(self):
        """The metrics in Prometheus's text format: this process's, or in
        multiprocess mode every worker's, added up."""
        folder = multiprocess_dir()
        if folder is None:
            return prometheus_client.generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=folder)
        registry.register(self.build_info)
        return prometheus_client.generate_latest(registry)


class MetricsResource:
    """``GET /api/metrics``: Prometheus's text format; never rate limited."""

    def __init__(self, metrics):
        self.metrics = metrics

    def on_get(self, req, resp):
        resp.content_type = CONTENT_TYPE
        resp.data = self.metrics.exposition()
