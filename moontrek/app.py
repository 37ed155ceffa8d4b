"""The application factory."""

import json

import cv2
import falcon

from .clients import ClientAddress
from .config import redacted
from .errors import handle_error
from .logs import configure_logging
from .openapi import OpenAPIResource
from .middleware import RateLimitMiddleware, RequestLogMiddleware
from .ratelimit import RateLimiter
from .registrar import Registrar
from .resources import AlgorithmsResource, HealthResource, RegistrarResource

__all__ = ["create_app", "RATE_LIMIT_HEADERS"]

MAX_FORM_PARTS = 16
RATE_LIMIT_HEADERS = ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"]


def create_app(config):
    """Build the WSGI app from a checked configuration (see moontrek.config)."""
    logger = configure_logging(config)
    if config["opencv_threads"]:
        # Process-wide: concurrent requests are the parallelism (see README).
        cv2.setNumThreads(config["opencv_threads"])
    limiter = RateLimiter(
        config["default_rate_limits"],
        storage_uri=config["rate_limit_storage_uri"],
        strategy=config["rate_limit_strategy"],
    )
    registrar = Registrar(
        surf_enabled=config["surf_enabled"],
        max_image_pixels=config["max_image_pixels"],
        default_pipeline=config["default_pipeline"],
        max_concurrent=config["max_concurrent_registrations"],
        wait_seconds=config["registration_wait_seconds"],
    )
    client_address = ClientAddress(config["trusted_proxies"])
    app = falcon.App(
        middleware=[
            falcon.CORSMiddleware(allow_origins=config["cors_allow_origins"], expose_headers=RATE_LIMIT_HEADERS),
            RequestLogMiddleware(client_address),
            RateLimitMiddleware(limiter, client_address, fail_open=config["rate_limit_fail_open"]),
        ]
    )
    # The forms have two or three fields; a body of hundreds of parts is an
    # attack on the parser, not an upload.
    app.req_options.media_handlers[falcon.MEDIA_MULTIPART].parse_options.max_body_part_count = MAX_FORM_PARTS
    app.add_error_handler(Exception, handle_error)
    app.add_error_handler(falcon.HTTPError, handle_error)

    registrar_resource = RegistrarResource(registrar, config["max_upload_bytes"])
    for prefix in ("/api", "/pyapi"):
        # /pyapi is the path the deployed Moon-Trek client posts to.
        app.add_route(f"{prefix}/registrar/{{algorithm}}", registrar_resource)
        app.add_route(f"{prefix}/registrar", AlgorithmsResource(registrar))
    app.add_route("/api/health", HealthResource())
    app.add_route("/api/openapi.json", OpenAPIResource())
    logger.info("effective config: %s", json.dumps(redacted(config), sort_keys=True))
    logger.info(
        "algorithms: %s",
        ", ".join(
            f"{entry['name']} ({entry['implementation'] if entry['available'] else 'unavailable'})"
            for entry in registrar.algorithms()
        ),
    )
    return app
