"""The shape of docker-compose.yml, run natively on loopback: Debian's
``nginx`` from deploy/nginx.conf, moontrek replicas (``moontrek serve``)
from deploy/moontrek.config.py, and a ``redis-server``; no Docker, no root
paths (everything lives in one temporary folder).

    python deploy/local.py                 # nginx on http://127.0.0.1:8080, 2 replicas; Ctrl+C stops all
    python deploy/local.py --port 8081 --replicas 3 --folder /tmp/moontrek-local

tests/test_deploy.py drives the same class. Loopback has a whole /8 of
addresses: nginx connects to the replicas from 127.0.0.2 (``proxy_bind``),
which is what the replicas trust, so a client on 127.0.0.1 (or any other
127.x address) is told apart from the proxy as it would be on a network.
"""

import argparse
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TEMPLATE = HERE / "nginx.conf"
REPLICA_CONFIG = HERE / "moontrek.config.py"
PROXY_ADDRESS = "127.0.0.2"
# A closed port: the client and the Node server are not part of this set-up,
# so / and /api/ answer 502 here.
ABSENT = "http://127.0.0.1:9"

__all__ = ["LocalDeployment", "render_nginx", "free_port"]


def free_port(host="127.0.0.1"):
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def render_nginx(values):
    """deploy/nginx.conf with its ${NAME}s filled in; nginx's own $variables
    are left as they are (as the nginx image's envsubst does)."""
    return string.Template(TEMPLATE.read_text()).safe_substitute(values)


def _main_conf(folder, include):
    """The rest of an nginx.conf, the part the nginx image carries: every
    path in ``folder``, the proxy's own source address."""
    user = "user root;\n" if hasattr(os, "geteuid") and os.geteuid() == 0 else ""
    temp = "\n".join(f"    {kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                                "uwsgi", "scgi"))
    return (
        f"{user}worker_processes 1;\npid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'} info;\n"
        "events { worker_connections 512; }\n"
        "http {\n"
        f"    access_log {folder / 'access.log'};\n{temp}\n"
        f"    proxy_bind {PROXY_ADDRESS};\n"
        f"    include {include};\n"
        "}\n"
    )


def _wait(check, what, timeout=60, process=None):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start within {timeout}s")
        time.sleep(0.05)


def _listening(port):
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


def _http_ok(port, path="/api/health"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.status == 200


class Replica:
    """One ``moontrek serve`` process on a loopback port."""

    def __init__(self, folder, index, config, port):
        self.folder = folder / f"replica-{index}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.index = index
        self.port = port
        self.log = self.folder / "moontrek.log"
        self.config_path = self.folder / "config.py"
        self.config_path.write_text("CONFIG = " + repr({**config, "log_filepath": str(self.log)}) + "\n")
        self.process = None

    def start(self):
        environ = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.console = open(self.folder / "console.txt", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moontrek", "serve", "--config", str(self.config_path), "--port", str(self.port)],
            stdout=self.console, stderr=subprocess.STDOUT, cwd=self.folder, env=environ,
        )
        return self

    def wait_healthy(self):
        _wait(lambda: _http_ok(self.port), f"replica {self.index}", process=self.process)

    def stop(self, timeout=60):
        """SIGTERM (it drains) and wait; the exit status."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=timeout)
        if self.process is not None:
            self.console.close()
        return None if self.process is None else self.process.returncode

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Redis:
    """A throwaway ``redis-server`` that can be stopped and started again on its port."""

    def __init__(self, folder, executable="redis-server"):
        self.executable = shutil.which(executable) or executable
        self.folder = folder
        self.port = free_port()
        self.process = None

    @property
    def uri(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def _pong(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def start(self):
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait(self._pong, "redis-server", process=self.process)
        return self

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None


class LocalDeployment:
    """nginx + ``replicas`` moontrek processes + Redis, all on loopback.

    ``overrides`` go over deploy/moontrek.config.py for every replica (after
    the loopback addresses are put in).
    """

    def __init__(self, folder, *, replicas=2, port=None, overrides=None, nginx="nginx"):
        sys.path.insert(0, str(ROOT))
        from moontrek.config import load_config

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.nginx_executable = shutil.which(nginx) or shutil.which(nginx, path="/usr/sbin:/usr/local/sbin")
        self.port = port or free_port()
        self.redis = Redis(self.folder)
        base = load_config(REPLICA_CONFIG)
        config = {
            key: value for key, value in base.items()
            if key not in ("log_filepath", "host", "port", "rate_limit_storage_uri", "trusted_proxies")
        }
        config.update(host="127.0.0.1", rate_limit_storage_uri=self.redis.uri, trusted_proxies=[PROXY_ADDRESS])
        config.update(overrides or {})
        self.replicas = [Replica(self.folder, index, config, free_port()) for index in range(replicas)]
        self.nginx = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def write_nginx_conf(self):
        servers = " ".join(f"server 127.0.0.1:{replica.port} max_fails=1 fail_timeout=10s;"
                           for replica in self.replicas)
        include = self.folder / "moontrek.nginx.conf"
        include.write_text(render_nginx({
            "NGINX_LISTEN": f"127.0.0.1:{self.port}", "MOONTREK_REPLICAS": servers,
            "CLIENT_URL": ABSENT, "NODE_URL": ABSENT,
        }))
        main = self.folder / "nginx.conf"
        main.write_text(_main_conf(self.folder, include))
        return main

    def start(self):
        if self.nginx_executable is None:
            raise FileNotFoundError("nginx is not installed (Debian: apt-get install nginx-light)")
        self.redis.start()
        for replica in self.replicas:
            replica.start()
        for replica in self.replicas:
            replica.wait_healthy()
        self.start_nginx()
        # Through nginx to a replica: /pyapi/registrar is the algorithm list.
        _wait(lambda: _http_ok(self.port, "/pyapi/registrar"), "nginx", process=self.nginx)
        return self

    def start_nginx(self):
        """nginx alone, listening once this returns (the replicas may be
        down: tests of nginx's own answers start only this)."""
        if self.nginx_executable is None:
            raise FileNotFoundError("nginx is not installed (Debian: apt-get install nginx-light)")
        main = self.write_nginx_conf()
        self.nginx_console = open(self.folder / "nginx-console.txt", "ab")
        self.nginx = subprocess.Popen(
            [self.nginx_executable, "-p", str(self.folder), "-e", str(self.folder / "error.log"), "-c", str(main),
             "-g", "daemon off;"],
            stdout=self.nginx_console, stderr=subprocess.STDOUT,
        )
        _wait(lambda: _listening(self.port), "nginx", process=self.nginx)
        return self

    def stop(self):
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)  # nginx's graceful stop
            try:
                self.nginx.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait()
        if self.nginx is not None:
            self.nginx_console.close()
        for replica in self.replicas:
            replica.stop()
        self.redis.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="nginx's port on 127.0.0.1")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--folder", help="where configs, logs and pid files go (default: a new temporary folder)")
    args = parser.parse_args(argv)
    folder = Path(args.folder or tempfile.mkdtemp(prefix="moontrek-local-"))
    deployment = LocalDeployment(folder, replicas=args.replicas, port=args.port)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        deployment.start()
        print(f"nginx:    {deployment.url}/pyapi/ (pid {deployment.nginx.pid})")
        for replica in deployment.replicas:
            print(f"replica {replica.index}: http://127.0.0.1:{replica.port} (pid {replica.process.pid}, "
                  f"log {replica.log})")
        print(f"redis:    {deployment.redis.uri} (pid {deployment.redis.process.pid})")
        print(f"files:    {folder}\nCtrl+C stops everything.", flush=True)
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        deployment.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
