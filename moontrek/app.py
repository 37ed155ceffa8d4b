"""The application factory."""

import falcon

from .errors import handle_error
from .logs import configure_logging
from .middleware import RateLimitMiddleware, RequestLogMiddleware
from .ratelimit import RateLimiter
from .registrar import Registrar
from .resources import AlgorithmsResource, HealthResource, RegistrarResource

__all__ = ["create_app", "RATE_LIMIT_HEADERS"]

RATE_LIMIT_HEADERS = ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"]


def create_app(config):
    """Build the WSGI app from a checked configuration (see moontrek.config)."""
    configure_logging(config)
    limiter = RateLimiter(
        config["default_rate_limits"],
        storage_uri=config["rate_limit_storage_uri"],
        strategy=config["rate_limit_strategy"],
    )
    registrar = Registrar(
        surf_enabled=config["surf_enabled"],
        max_image_pixels=config["max_image_pixels"],
        default_pipeline=config["default_pipeline"],
    )
    app = falcon.App(
        middleware=[
            falcon.CORSMiddleware(allow_origins=config["cors_allow_origins"], expose_headers=RATE_LIMIT_HEADERS),
            RequestLogMiddleware(),
            RateLimitMiddleware(limiter),
        ]
    )
    app.add_error_handler(Exception, handle_error)
    app.add_error_handler(falcon.HTTPError, handle_error)

    registrar_resource = RegistrarResource(registrar, config["max_upload_bytes"])
    for prefix in ("/api", "/pyapi"):
        # /pyapi is the path the deployed Moon-Trek client posts to.
        app.add_route(f"{prefix}/registrar/{{algorithm}}", registrar_resource)
        app.add_route(f"{prefix}/registrar", AlgorithmsResource(registrar))
    app.add_route("/api/health", HealthResource())
    return app
