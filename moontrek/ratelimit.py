"""Rate limits from `limits` strings, kept in a storage chosen by URI.

``memory://`` serves one process; ``redis://host:port/db`` lets several
processes or machines behind a load balancer share one budget per client.
"""

import logging
import math
import threading
from dataclasses import dataclass

import limits
import limits.errors
import limits.storage
import limits.strategies

from .config import redacted

__all__ = ["RateLimiter", "RateLimitState", "StorageUnavailable"]

logger = logging.getLogger("moontrek.ratelimit")

# A dead Redis must cost a request milliseconds, not the client's patience.
_REDIS_OPTIONS = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}


class StorageUnavailable(Exception):
    """The rate-limit storage could not be reached."""


@dataclass(frozen=True)
class RateLimitState:
    """The outcome of one hit: allowed or not, and what the headers say."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # epoch seconds when the tightest window resets
    retry_after: int  # seconds until a refused client may try again

    def headers(self):
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class RateLimiter:
    """Applies a list of rate strings to keys (client addresses, per scope)."""

    def __init__(self, rates, storage_uri="memory://", strategy="fixed-window", on_outage=None):
        self.limits = [item for rate in rates for item in limits.parse_many(rate)]
        options = _REDIS_OPTIONS if storage_uri.split("://", 1)[0] in ("redis", "rediss", "valkey") else {}
        self.storage = limits.storage.storage_from_string(storage_uri, wrap_exceptions=True, **options)
        self.strategy = limits.strategies.STRATEGIES[strategy](self.storage)
        self._shown_uri = redacted({"rate_limit_storage_uri": storage_uri})["rate_limit_storage_uri"]
        self._outage = False
        self._lock = threading.Lock()
        # Called once at the start of each outage (the metrics count them).
        self._on_outage = on_outage

    def hit(self, *identifiers, now):
        """Count one request for ``identifiers``; None when no limit applies.

        Raises StorageUnavailable when the storage cannot be reached. The
        first failure of an outage and the recovery are logged once each.
        """
        if not self.limits:
            return None
        try:
            state = self._hit(identifiers, now)
        except limits.errors.StorageError as exc:
            self._set_outage(True, exc)
            raise StorageUnavailable(str(exc)) from exc
        self._set_outage(False)
        return state

    def _set_outage(self, down, exc=None):
        with self._lock:
            if down == self._outage:
                return
            self._outage = down
        if down:
            if self._on_outage is not None:
                self._on_outage()
            logger.error("rate-limit storage %s unreachable: %s", self._shown_uri, exc)
        else:
            logger.warning("rate-limit storage %s reachable again", self._shown_uri)

    def _hit(self, identifiers, now):
        tightest = None
        allowed = True
        for item in self.limits:
            # Stop at the first breach so that a refused request does not also
            # eat into the other windows (Flask-Limiter's order of checks).
            if not self.strategy.hit(item, *identifiers):
                allowed = False
                tightest = (item, self.strategy.get_window_stats(item, *identifiers))
                break
            stats = self.strategy.get_window_stats(item, *identifiers)
            if tightest is None or stats.remaining < tightest[1].remaining:
                tightest = (item, stats)
        item, stats = tightest
        return RateLimitState(
            allowed=allowed,
            limit=item.amount,
            remaining=max(0, stats.remaining),
            reset=math.ceil(stats.reset_time),
            retry_after=max(1, math.ceil(stats.reset_time - now)),
        )

    def reset(self):
        self.storage.reset()

