"""The application factory."""

import ctypes
import json
import sys
from pathlib import Path

import cv2
import falcon

from .clients import ClientAddress
from .config import redacted
from .errors import handle_error
from .logs import configure_logging
from .metrics import Metrics, MetricsResource
from .openapi import OpenAPIResource
from .middleware import RateLimitMiddleware, RequestLogMiddleware
from .ratelimit import RateLimiter
from .registrar import Registrar
from .resources import AlgorithmsResource, HealthResource, MoonDetectResource, RegistrarResource
from .resources import OverlayResource, PageResource

__all__ = ["create_app", "tune_malloc", "RATE_LIMIT_HEADERS"]

MAX_FORM_PARTS = 16
# glibc's mallopt parameter numbers, and the values moontrek sets (tune_malloc).
M_ARENA_MAX, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD = -8, -3, -1
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's own ceiling for its sliding threshold
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # what glibc slides it to alongside
RATE_LIMIT_HEADERS = ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"]
# What the overlay answers beside its image; scripts on other origins read them too.
OVERLAY_HEADERS = ["X-Homography", "X-Registration"]
# The page at / and its script and style (package data).
STATIC_DIR = Path(__file__).resolve().parent / "static"


def tune_malloc(arenas=2):
    """Set glibc's malloc for a server of image requests. A no-op where the
    C library is not glibc.

    Arenas are capped: each waitress thread otherwise gets its own, and the
    large, short-lived image buffers fragment them all (with 8 threads the
    measured peak was 921 MB against 388 MB with 2 arenas).

    With the cap, threads share arenas, and glibc's sliding thresholds,
    which follow the largest block freed, stayed below one request's
    working set (a 2000 x 2000 RGBA render is 16 MB, and a request holds
    a few such): the top of an arena was handed back to the kernel after
    every request and faulted in again by the next, ~4,500 page faults and
    3-35 ms of CPU a demo request. Fixing them where glibc's sliding would
    stop (blocks of 32 MiB and more mapped on their own, an arena trimmed
    when 64 MiB lie free at its top) keeps the working set resident.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # no libc.so.6, or one without mallopt
        return
    for parameter, value in ((M_ARENA_MAX, arenas), (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                             (M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        mallopt(parameter, value)


def create_app(config, *, metrics=None, rotate_logs=True):
    """Build the WSGI app from a checked configuration (see moontrek.config).

    ``metrics`` (a moontrek.metrics.Metrics) is made here unless the server
    passes its own; ``rotate_logs`` is False in worker processes, whose
    supervisor rotates the shared log file.
    """
    logger = configure_logging(config, rotate=rotate_logs)
    if config["opencv_threads"]:
        # Process-wide: concurrent requests are the parallelism (see README).
        cv2.setNumThreads(config["opencv_threads"])
    tune_malloc()
    if metrics is None:
        metrics = Metrics()
    limiter = RateLimiter(
        config["default_rate_limits"],
        storage_uri=config["rate_limit_storage_uri"],
        strategy=config["rate_limit_strategy"],
        on_outage=metrics.storage_outages.inc,
    )
    registrar = Registrar(
        surf_enabled=config["surf_enabled"],
        max_image_pixels=config["max_image_pixels"],
        default_pipeline=config["default_pipeline"],
        max_concurrent=config["max_concurrent_registrations"],
        wait_seconds=config["registration_wait_seconds"],
        parallel_sides=config["parallel_sides"],
        metrics=metrics,
    )
    metrics.build_info.labels["surf"] = registrar.surf_implementation()
    client_address = ClientAddress(config["trusted_proxies"])
    app = falcon.App(
        middleware=[
            falcon.CORSMiddleware(
                allow_origins=config["cors_allow_origins"], expose_headers=RATE_LIMIT_HEADERS + OVERLAY_HEADERS
            ),
            RequestLogMiddleware(client_address, metrics),
            RateLimitMiddleware(limiter, client_address, fail_open=config["rate_limit_fail_open"], metrics=metrics),
        ]
    )
    # The forms have two or three fields; a body of hundreds of parts is an
    # attack on the parser, not an upload.
    app.req_options.media_handlers[falcon.MEDIA_MULTIPART].parse_options.max_body_part_count = MAX_FORM_PARTS
    app.add_error_handler(Exception, handle_error)
    app.add_error_handler(falcon.HTTPError, handle_error)

    registrar_resource = RegistrarResource(registrar, config["max_upload_bytes"])
    algorithms_resource = AlgorithmsResource(registrar)
    moon_resource = MoonDetectResource(registrar, config["max_upload_bytes"])
    for prefix in ("/api", "/pyapi"):
        # /pyapi is the path the deployed Moon-Trek client posts to.
        app.add_route(f"{prefix}/registrar/{{algorithm}}", registrar_resource)
        app.add_route(f"{prefix}/registrar", algorithms_resource)
        app.add_route(f"{prefix}/moon/detect", moon_resource)
    overlay_resource = OverlayResource(registrar, config["max_upload_bytes"])
    for prefix in ("/api", "/pyapi"):
        app.add_route(f"{prefix}/overlay/{{algorithm}}", overlay_resource)
    app.add_route("/", PageResource((STATIC_DIR / "index.html").read_bytes()))
    app.add_static_route("/static", str(STATIC_DIR))
    app.add_route("/api/health", HealthResource())
    app.add_route("/api/openapi.json", OpenAPIResource())
    if config["metrics_enabled"]:
        # Not rate limited: Prometheus scrapes every few seconds.
        app.add_route("/api/metrics", MetricsResource(metrics))
    logger.info("effective config: %s", json.dumps(redacted(config), sort_keys=True))
    logger.info(
        "algorithms: %s",
        ", ".join(
            f"{entry['name']} ({entry['implementation'] if entry['available'] else 'unavailable'})"
            for entry in registrar.algorithms()
        ),
    )
    return app
