"""Request logging and rate limiting, as Falcon middleware."""

import logging
import time

import falcon

__all__ = ["RequestLogMiddleware", "RateLimitMiddleware"]

request_logger = logging.getLogger("moontrek.requests")
limit_logger = logging.getLogger("moontrek.ratelimit")


def client_address(req):
    """The address a request is counted against."""
    return req.remote_addr or "unknown"


class RequestLogMiddleware:
    """One log line per request: method, path, status, milliseconds, client."""

    def process_request(self, req, resp):
        req.context.started = time.perf_counter()

    def process_response(self, req, resp, resource, req_succeeded):
        started = req.context.get("started", time.perf_counter())
        request_logger.info(
            "%s %s %s %.1fms %s",
            req.method,
            req.path,
            resp.status_code,
            (time.perf_counter() - started) * 1000.0,
            client_address(req),
        )


class RateLimitMiddleware:
    """Applies the limiter to resources that declare a ``rate_limit_scope``.

    A resource's ``rate_limited_methods`` say which methods spend the budget
    (a CORS preflight or a wrong method should not). The scope, not the path,
    is part of the key, so the /pyapi alias shares the /api budget.
    """

    def __init__(self, limiter):
        self.limiter = limiter

    def process_resource(self, req, resp, resource, params):
        scope = getattr(resource, "rate_limit_scope", None)
        if scope is None or req.method not in getattr(resource, "rate_limited_methods", ("POST",)):
            return
        address = client_address(req)
        state = self.limiter.hit(scope, address, now=time.time())
        if state is None:
            return
        req.context.rate_limit = state
        if not state.allowed:
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
