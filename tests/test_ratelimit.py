"""Rate limits across processes (Redis), outages, strategies and proxies."""

from pathlib import Path

import falcon.testing
import pytest

from moontrek.app import create_app
from tests.conftest import multipart

# An empty form: refused with 400 after the limiter has counted it, so these
# tests spend the budget without running registrations.
EMPTY_FORM = multipart({})


def spend(client, path="/api/registrar/SIFT", **kwargs):
    body, headers = EMPTY_FORM
    return client.simulate_post(path, body=body, headers=dict(headers, **kwargs.pop("headers", {})), **kwargs)


def read_log(config):
    return Path(config["log_filepath"]).read_text(encoding="utf-8")


class TestSharedRedis:
    def test_two_apps_share_one_budget(self, make_config, redis):
        """Two app instances on one Redis spend one budget per client, as two
        servers behind a load balancer must."""
        config = make_config(default_rate_limits=["3 per minute"], rate_limit_storage_uri=redis.uri)
        first = falcon.testing.TestClient(create_app(config))
        second = falcon.testing.TestClient(create_app(config))
        assert [spend(first).status_code, spend(second).status_code, spend(first).status_code] == [400, 400, 400]
        assert spend(second).status_code == 429
        assert spend(first).status_code == 429

    @pytest.mark.parametrize("strategy", ["fixed-window", "moving-window", "sliding-window-counter"])
    def test_strategies_on_redis(self, make_config, redis, strategy):
        """Every strategy enforces the limit on Redis."""
        config = make_config(
            default_rate_limits=["2 per minute"], rate_limit_storage_uri=redis.uri, rate_limit_strategy=strategy
        )
        client = falcon.testing.TestClient(create_app(config))
        assert [spend(client).status_code for _ in range(3)] == [400, 400, 429]


class TestOutage:
    def test_fail_open(self, make_config, redis):
        """With Redis gone the server keeps serving (fail open), logs the
        outage once, and enforces limits again when Redis is back."""
        config = make_config(default_rate_limits=["2 per minute"], rate_limit_storage_uri=redis.uri)
        client = falcon.testing.TestClient(create_app(config))
        assert spend(client).status_code == 400
        redis.stop()
        statuses = [spend(client).status_code for _ in range(5)]
        assert statuses == [400] * 5
        assert "X-RateLimit-Limit" not in spend(client).headers
        redis.start()
        assert [spend(client).status_code for _ in range(3)] == [400, 400, 429]
        log = read_log(config)
        assert log.count("unreachable") == 1
        assert log.count("reachable again") == 1

    def test_fail_closed(self, make_config, redis):
        """Configured to fail closed, the server answers 503 with Retry-After
        while Redis is gone, and serves again when it is back."""
        config = make_config(
            default_rate_limits=["5 per minute"], rate_limit_storage_uri=redis.uri, rate_limit_fail_open=False
        )
        client = falcon.testing.TestClient(create_app(config))
        redis.stop()
        result = spend(client)
        assert result.status_code == 503
        assert result.json == {"ok": False, "status": 503, "error": result.json["error"]}
        assert int(result.headers["Retry-After"]) > 0
        assert client.simulate_get("/api/health").status_code == 200
        redis.start()
        assert spend(client).status_code == 400


class TestStrategies:
    @pytest.mark.parametrize("strategy", ["fixed-window", "moving-window", "sliding-window-counter"])
    def test_each_strategy_limits(self, make_config, strategy):
        """fixed-window, moving-window and sliding-window-counter all enforce the limit."""
        config = make_config(default_rate_limits=["2 per minute"], rate_limit_strategy=strategy)
        client = falcon.testing.TestClient(create_app(config))
        assert [spend(client).status_code for _ in range(3)] == [400, 400, 429]

    def test_several_limits(self, make_config):
        """With several limits the tightest one decides and is reported."""
        config = make_config(default_rate_limits=["10 per hour", "2 per minute"])
        client = falcon.testing.TestClient(create_app(config))
        first = spend(client)
        assert first.headers["X-RateLimit-Limit"] == "2" and first.headers["X-RateLimit-Remaining"] == "1"
        spend(client)
        assert spend(client).status_code == 429

    def test_no_limits(self, make_config):
        """An empty default_rate_limits switches rate limiting off."""
        client = falcon.testing.TestClient(create_app(make_config(default_rate_limits=[])))
        assert all(spend(client).status_code == 400 for _ in range(5))


class TestProxies:
    @pytest.fixture
    def client(self, make_config):
        config = make_config(default_rate_limits=["2 per minute"], trusted_proxies=["10.0.0.1", "10.1.0.0/16"])
        return falcon.testing.TestClient(create_app(config))

    def test_forged_header_from_untrusted_address(self, client):
        """A client that forges X-Forwarded-For from an untrusted address is
        still counted by its own address: no fresh budget."""
        for n in range(2):
            spend(client, remote_addr="203.0.113.9", headers={"X-Forwarded-For": f"198.51.100.{n}"})
        result = spend(client, remote_addr="203.0.113.9", headers={"X-Forwarded-For": "198.51.100.77"})
        assert result.status_code == 429

    def test_trusted_proxy_is_believed(self, client):
        """Behind a trusted proxy each forwarded client has its own budget."""
        for _ in range(2):
            spend(client, remote_addr="10.0.0.1", headers={"X-Forwarded-For": "198.51.100.1"})
        assert spend(client, remote_addr="10.0.0.1", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 429
        assert spend(client, remote_addr="10.0.0.1", headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 400

    def test_forged_hops_before_the_proxy_are_ignored(self, client):
        """A client behind a trusted proxy cannot escape by prepending forged
        hops: the rightmost untrusted hop is the client."""
        for n in range(2):
            forwarded = f"192.0.2.{n}, 198.51.100.5, 10.1.2.3"
            spend(client, remote_addr="10.0.0.1", headers={"X-Forwarded-For": forwarded})
        forwarded = "192.0.2.99, 198.51.100.5, 10.1.2.3"
        assert spend(client, remote_addr="10.0.0.1", headers={"X-Forwarded-For": forwarded}).status_code == 429
