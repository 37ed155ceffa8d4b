"""Request logging and rate limiting, as Falcon middleware."""

import logging
import time

import falcon

from .ratelimit import StorageUnavailable

__all__ = ["RequestLogMiddleware", "RateLimitMiddleware"]

request_logger = logging.getLogger("moontrek.requests")
limit_logger = logging.getLogger("moontrek.ratelimit")

# How long a client is asked to wait when the limiter's storage is down and
# the server is configured to fail closed.
STORAGE_RETRY_AFTER = 5
# Methods counted under their own name in the metrics; anything else is "other".
KNOWN_METHODS = frozenset(("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"))


class RequestLogMiddleware:
    """One log line per request: method, path, status, milliseconds, client."""

    def __init__(self, client_address, metrics=None):
        self.client_address = client_address
        self.metrics = metrics

    def process_request(self, req, resp):
        req.context.started = time.perf_counter()

    def process_response(self, req, resp, resource, req_succeeded):
        started = req.context.get("started", time.perf_counter())
        elapsed = time.perf_counter() - started
        if self.metrics is not None:
            # The route template, never the path: the label stays bounded
            # whatever paths clients make up.
            route = req.uri_template if resource is not None and req.uri_template else "unmatched"
            method = req.method if req.method in KNOWN_METHODS else "other"
            self.metrics.requests.labels(method, route, str(resp.status_code)).inc()
            self.metrics.request_duration.labels(method, route).observe(elapsed)
        line = "%s %s %s %.1fms %s"
        args = [req.method, req.path[:200], resp.status_code, elapsed * 1000.0, self.client_address(req)]
        error = req.context.get("error_message")
        if error:
            line += " error=%r"
            args.append(error[:300])
        request_logger.info(line, *args)


class RateLimitMiddleware:
    """Applies the limiter to resources that declare a ``rate_limit_scope``.

    A resource's ``rate_limited_methods`` say which methods spend the budget
    (a CORS preflight or a wrong method should not). The scope, not the path,
    is part of the key, so the /pyapi alias shares the /api budget.
    """

    def __init__(self, limiter, client_address, *, fail_open=True, metrics=None):
        self.limiter = limiter
        self.client_address = client_address
        self.fail_open = fail_open
        self.metrics = metrics

    def process_resource(self, req, resp, resource, params):
        scope = getattr(resource, "rate_limit_scope", None)
        if scope is None or req.method not in getattr(resource, "rate_limited_methods", ("POST",)):
            return
        address = self.client_address(req)
        try:
            state = self.limiter.hit(scope, address, now=time.time())
        except StorageUnavailable:
            # The limiter has logged the outage once; nothing more per request.
            if self.metrics is not None:
                self.metrics.storage_errors.inc()
            if self.fail_open:
                return
            raise falcon.HTTPServiceUnavailable(
                title="Rate limiting unavailable",
                description="The server cannot check its rate limits right now; try again in a few seconds.",
                retry_after=STORAGE_RETRY_AFTER,
            ) from None
        if state is None:
            return
        req.context.rate_limit = state
        if not state.allowed:
            if self.metrics is not None:
                self.metrics.rate_limit_breaches.labels(scope).inc()
            limit_logger.warning(
                "rate limit exceeded: %s on %s %s (%d per window)", address, req.method, req.path, state.limit
            )
            raise falcon.HTTPTooManyRequests(
                title="Too many requests",
                description=(
                    f"This address has used its {state.limit} requests for now; "
                    f"try again in {state.retry_after} seconds."
                ),
                retry_after=state.retry_after,
            )

    def process_response(self, req, resp, resource, req_succeeded):
        state = req.context.get("rate_limit")
        if state is not None:
            resp.set_headers(state.headers())
