"""Rate limits from `limits` strings, kept in a storage chosen by URI."""

import math
from dataclasses import dataclass

import limits
import limits.storage
import limits.strategies

__all__ = ["RateLimiter", "RateLimitState"]


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

    def __init__(self, rates, storage_uri="memory://", strategy="fixed-window"):
        self.limits = [item for rate in rates for item in limits.parse_many(rate)]
        self.storage = limits.storage.storage_from_string(storage_uri)
        self.strategy = limits.strategies.STRATEGIES[strategy](self.storage)

    def hit(self, *identifiers, now):
        """Count one request for ``identifiers``; None when no limit applies."""
        if not self.limits:
            return None
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
