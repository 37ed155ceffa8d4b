"""deploy/: nginx in front of two moontrek replicas sharing Redis, run for
real on loopback without Docker (deploy/local.py, from the same nginx
template and replica config that docker-compose.yml uses)."""

import http.client
import importlib.util
import ipaddress
import json
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
import yaml

from moontrek.config import load_config
from moontrek.synthetic import encode, make_pair, render_moon
from tests.conftest import multipart
from tests.servers import request

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
LIMIT = 5  # per client and hour, in the replicas' config for these tests


def local_module():
    spec = importlib.util.spec_from_file_location("moontrek_deploy_local", DEPLOY / "local.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def needs(executable):
    if shutil.which(executable) is None and shutil.which(executable, path="/usr/sbin:/usr/local/sbin") is None:
        pytest.skip(f"{executable} is not installed: scripts/test.sh installs it with apt-get")


@pytest.fixture(scope="module")
def body():
    """A small registration (ORB, classic pipeline): milliseconds each."""
    model = render_moon(320, seed=5)
    pair = make_pair(model, angle=25.0, scale=0.9, user_size=(300, 290))
    return multipart({"user-file": encode(pair.user), "model-file": encode(model)})


def start(folder, **overrides):
    needs("nginx")
    needs("redis-server")
    config = {"default_rate_limits": [f"{LIMIT} per hour"], "registration_wait_seconds": 60, **overrides}
    return local_module().LocalDeployment(folder, replicas=2, overrides=config).start()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    deployment = start(tmp_path_factory.mktemp("deploy"))
    yield deployment
    deployment.stop()


class Client:
    """Requests through nginx from a loopback address of one's own (nginx
    sees it as the client's address)."""

    counter = iter(range(10, 250))

    def __init__(self, deployment, body, address=None):
        self.deployment = deployment
        self.body = body
        self.address = address or f"127.0.0.{next(self.counter)}"

    def register(self, headers=None, source=None):
        payload, base = self.body
        status, response_headers, raw = request(
            self.deployment.port, "POST", "/pyapi/registrar/ORB?pipeline=classic", payload,
            {**base, **(headers or {})}, source=source or self.address)
        return status, response_headers, json.loads(raw)


def lines(replica, address, status=None):
    """The replica's request lines for registrations from ``address``."""
    pattern = re.compile(rf"POST /pyapi/registrar/ORB {status or '[0-9]+'} \S+ {re.escape(address)}( |$)")
    return [line for line in replica.log_text().splitlines() if pattern.search(line)]


class TestDeployFiles:
    def test_compose_and_config_agree(self):
        """docker-compose.yml keeps the original shape (nginx; /pyapi to the
        replicas with client_max_body_size 30M; Redis) and the replicas'
        config trusts exactly the network nginx sits on, which no published
        port reaches."""
        compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
        services = compose["services"]
        assert {"nginx", "moontrek", "redis", "client", "node-server"} <= set(services)
        assert "ports" not in services["moontrek"] and "ports" not in services["redis"]
        nginx_address = ipaddress.ip_address(services["nginx"]["networks"]["backend"]["ipv4_address"])
        subnet = ipaddress.ip_network(compose["networks"]["backend"]["ipam"]["config"][0]["subnet"])
        config = load_config(DEPLOY / "moontrek.config.py")
        trusted = [ipaddress.ip_network(proxy) for proxy in config["trusted_proxies"]]
        assert trusted == [subnet] and nginx_address in subnet
        assert config["rate_limit_storage_uri"].startswith("redis://redis:")
        assert config["port"] == 80 and config["host"] == "0.0.0.0"
        template = (DEPLOY / "nginx.conf").read_text()
        pyapi = template[template.index("location /pyapi/"):]
        assert "client_max_body_size 30M;" in pyapi and "proxy_pass http://moontrek;" in pyapi
        for name in services["nginx"]["environment"]:
            assert "${" + name + "}" in template


class TestThroughNginx:
    def test_registrations_on_both_replicas(self, deployment, body):
        """Registrations through nginx succeed, and both replicas serve them."""
        client = Client(deployment, body)
        for _ in range(4):
            status, _, payload = client.register()
            assert status == 200 and payload["ok"] is True, payload
        for replica in deployment.replicas:
            assert lines(replica, client.address, 200), f"replica {replica.index} served none"

    def test_budget_shared_across_replicas(self, deployment, body):
        """One client's budget is one, whichever replica answers: after
        LIMIT registrations every replica answers 429 with Retry-After."""
        client = Client(deployment, body)
        statuses = [client.register()[0] for _ in range(LIMIT)]
        assert statuses == [200] * LIMIT
        refused = [client.register() for _ in range(4)]
        assert [status for status, _, _ in refused] == [429] * 4
        assert all(int(headers["Retry-After"]) >= 1 for _, headers, _ in refused)
        for replica in deployment.replicas:
            assert lines(replica, client.address, 429), f"replica {replica.index} refused none"

    def test_forged_forwarded_for_buys_nothing(self, deployment, body):
        """A client's own X-Forwarded-For does not change who it is: a new
        forged address each time still runs out after LIMIT; nginx's header
        is believed, so another client has a budget of its own."""
        client = Client(deployment, body)
        statuses = [client.register({"X-Forwarded-For": f"198.51.100.{n}"})[0] for n in range(LIMIT + 2)]
        assert statuses == [200] * LIMIT + [429, 429]
        logged = sum(len(lines(replica, client.address)) for replica in deployment.replicas)
        assert logged == LIMIT + 2  # logged under its real address, never a forged one or nginx's
        assert Client(deployment, body).register()[0] == 200


class TestReplicaStopped:
    def test_sigterm_mid_run_loses_nothing(self, deployment, body):
        """A replica stopped with SIGTERM in the middle of a run of requests
        drains the ones it has, nginx sends the rest to the other, and every
        request of the run is answered 200."""
        total, stop_after = 30, 8
        statuses, done = [], threading.Semaphore(0)
        lock = threading.Lock()
        addresses = iter(f"127.0.1.{n}" for n in range(1, total + 1))  # a fresh budget each

        def run():
            while True:
                with lock:
                    address = next(addresses, None)
                if address is None:
                    return
                status = Client(deployment, body, address).register()[0]
                with lock:
                    statuses.append(status)
                done.release()

        threads = [threading.Thread(target=run) for _ in range(4)]
        for thread in threads:
            thread.start()
        for _ in range(stop_after):
            assert done.acquire(timeout=60)
        stopped = deployment.replicas[0]
        exit_status = stopped.stop()
        for thread in threads:
            thread.join(120)
        assert exit_status == 0
        assert statuses == [200] * total, statuses
        log = stopped.log_text()
        assert "finishing requests in flight" in log and "moontrek stopped" in log
        # Back for the tests after this one (nginx retries it after fail_timeout).
        stopped.start().wait_healthy()


class TestRedisRestarted:
    def test_fail_open_keeps_serving(self, deployment, body):
        """rate_limit_fail_open (the deploy config's True): Redis stopped
        mid-run, requests keep being answered (logged once per replica as an
        outage); Redis back, the limits apply again."""
        client = Client(deployment, body)
        assert client.register()[0] == 200
        deployment.redis.stop()
        try:
            statuses = [client.register()[0] for _ in range(LIMIT + 2)]
        finally:
            deployment.redis.start()
        assert statuses == [200] * (LIMIT + 2)
        assert any("unreachable" in replica.log_text() for replica in deployment.replicas)
        fresh = Client(deployment, body)
        after = [fresh.register()[0] for _ in range(LIMIT + 1)]
        assert after == [200] * LIMIT + [429]
        assert any("reachable again" in replica.log_text() for replica in deployment.replicas)

    def test_fail_closed_answers_503(self, tmp_path, body):
        """With rate_limit_fail_open False, Redis stopped: 503 with
        Retry-After through nginx; Redis back: served again."""
        deployment = start(tmp_path, rate_limit_fail_open=False)
        try:
            client = Client(deployment, body)
            assert client.register()[0] == 200
            deployment.redis.stop()
            try:
                status, headers, payload = client.register()
            finally:
                deployment.redis.start()
            assert status == 503 and payload["status"] == 503 and int(headers["Retry-After"]) >= 1
            deadline = time.monotonic() + 30
            while client.register()[0] != 200:
                assert time.monotonic() < deadline, "never served again after Redis came back"
                time.sleep(0.2)
        finally:
            deployment.stop()


def post_headers_only(port, headers):
    """A POST to /pyapi/ whose headers are sent and whose body never is:
    (status, headers, parsed JSON body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("POST", "/pyapi/registrar/ORB")
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.headers, json.loads(response.read())
    finally:
        connection.close()


class TestNginxOwnAnswers:
    """What nginx answers itself on /pyapi/ is the JSON envelope too, and a
    page on another origin can read it."""

    ORIGIN = {"Origin": "https://moon-trek.example"}

    def test_body_over_nginx_limit(self, deployment):
        """Over client_max_body_size (30M): 413 in the envelope, refused
        from the Content-Length before any body is read."""
        status, headers, payload = post_headers_only(deployment.port, {
            **self.ORIGIN, "Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(30 * 2**20 + 1)})
        assert status == 413 and payload == {"ok": False, "status": 413, "error": payload["error"]}
        assert "upload limit of 31457280 bytes" in payload["error"]
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert headers["Content-Type"] == "application/json"

    def test_no_replica_answering(self, tmp_path, body):
        """Every replica down: 502 in the envelope with Retry-After."""
        needs("nginx")
        alone = local_module().LocalDeployment(tmp_path, replicas=2).start_nginx()
        try:
            payload, base = body
            status, headers, raw = request(alone.port, "POST", "/pyapi/registrar/ORB", payload,
                                           {**base, **self.ORIGIN})
        finally:
            alone.stop()
        answer = json.loads(raw)
        assert status == 502 and answer == {"ok": False, "status": 502, "error": answer["error"]}
        assert "try again" in answer["error"]
        assert headers["Access-Control-Allow-Origin"] == "*" and int(headers["Retry-After"]) >= 1
