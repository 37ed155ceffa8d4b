"""Drive a real moontrek server over HTTP with concurrent clients.

Starts ``python -m moontrek serve`` on a free loopback port (or uses --url),
posts registrations from N concurrent clients, and prints throughput,
latency percentiles, status counts and the server's peak resident memory.
Uses the real demo pairs from ../shared/data/registrate when present, else
generated pairs. Loopback only; bounded in requests and time.

    python benchmarks/load.py --clients 1 8 --requests 48 [--pipelines moon classic]
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from moontrek.synthetic import encode, make_pair, render_moon  # noqa: E402
from tests.conftest import multipart  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "registrate"


def load_pairs():
    if SHARED.is_dir():
        pairs = []
        for number in ("01", "02", "03"):
            user = (SHARED / f"{number}-userImage.png").read_bytes()
            model = (SHARED / f"{number}-modelImage.png").read_bytes()
            pairs.append((f"demo {number}", user, model))
        return pairs, "the demo pairs in ../shared/data/registrate"
    pairs = []
    for seed in range(3):
        model = render_moon(1000, seed=seed)
        pair = make_pair(model, angle=40.0 * seed + 10, scale=0.6, user_size=(640, 620))
        pairs.append((f"synthetic {seed}", encode(pair.user), encode(model)))
    return pairs, "generated pairs (../shared/data is absent)"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args, folder):
    port = free_port()
    config = Path(folder) / "config.py"
    config.write_text(
        "CONFIG = {\n"
        f"    'log_filepath': {str(Path(folder) / 'moontrek.log')!r},\n"
        "    'logging_level': 'WARNING',\n"
        "    'default_rate_limits': [],\n"
        f"    'opencv_threads': {args.opencv_threads},\n"
        f"    'parallel_sides': {not args.no_parallel_sides},\n"
        + (f"    'surf_processes': {args.surf_processes},\n" if args.surf_processes is not None else "")
        + f"    'max_concurrent_registrations': {args.slots},\n"
        f"    'registration_wait_seconds': {args.wait},\n"
        "}\n"
    )
    command = [sys.executable, "-m", "moontrek", "serve", "--config", str(config), "--port", str(port),
               "--threads", str(args.threads), "--workers", str(args.workers)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if get(port, "/api/health")[0] == 200:
                return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not start")


def get(port, path):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def post(port, path, body, headers):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def peak_rss_mb(pid):
    """Peak resident memory of ``pid`` and its child processes (the workers
    of --workers N), added up."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return float("nan")
    total = next((int(line.split()[1]) / 1024 for line in status.read_text().splitlines()
                  if line.startswith("VmHWM")), 0.0)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in children.read_text().split() if children.exists() else []:
        total += peak_rss_mb(int(child))
    return total


def server_cpu_seconds(pid):
    """Seconds every thread of the server and of its worker processes
    (--workers N) has run (the scheduler's nanosecond counters), or NaN
    when it is not ours to read."""
    tasks = Path(f"/proc/{pid}/task") if pid else None
    if tasks is None or not tasks.exists():
        return float("nan")
    total = 0.0
    for task in tasks.iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            pass
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in children.read_text().split() if children.exists() else []:
        child_seconds = server_cpu_seconds(int(child))
        if child_seconds == child_seconds:  # a worker that has just gone is NaN
            total += child_seconds
    return total


def run(port, bodies, clients, requests, algorithm, pipeline=None, pid=None):
    """``requests`` posts spread over ``clients`` threads; returns the figures."""
    path = f"/api/registrar/{algorithm}" + (f"?pipeline={pipeline}" if pipeline else "")
    latencies, statuses = [], Counter()
    lock = threading.Lock()
    counter = iter(range(requests))

    def client():
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            body, headers = bodies[index % len(bodies)]
            started = time.perf_counter()
            try:
                status = post(port, path, body, headers)
            except OSError as exc:
                status = type(exc).__name__
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses[status] += 1

    started, started_cpu = time.perf_counter(), server_cpu_seconds(pid)
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    cpu = server_cpu_seconds(pid) - started_cpu
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "clients": clients,
        "requests": requests,
        "throughput": requests / wall,
        # Requests per second of one core the server actually used: a
        # throughput a machine shared with other work does not distort.
        "per_core": requests / cpu if cpu > 0 else float("nan"),
        "p50": quantiles[49],
        "p95": quantiles[94],
        "p99": quantiles[98],
        "statuses": dict(statuses),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url-port", type=int, help="use a server already listening on this loopback port")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--requests", type=int, default=48, help="requests per run")
    parser.add_argument("--algorithm", default="SIFT")
    parser.add_argument("--pipelines", nargs="+", default=["moon"], help="e.g. moon classic: each run in turn")
    parser.add_argument("--threads", type=int, default=8, help="waitress threads of the started server")
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 1, help="max_concurrent_registrations")
    parser.add_argument("--wait", type=float, default=30.0, help="registration_wait_seconds")
    parser.add_argument("--opencv-threads", type=int, default=1, help="opencv_threads of the started server")
    parser.add_argument(
        "--no-parallel-sides", action="store_true",
        help="parallel_sides False: a lone request on one thread (the 8/1 scaling without intra-request parallelism)",
    )
    parser.add_argument("--surf-processes", type=int, default=None,
                        help="surf_processes of the started server (default: the server's own default)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes of the started server (threads and slots are shared among them)")
    args = parser.parse_args(argv)

    pairs, source = load_pairs()
    bodies = [multipart({"user-file": user, "model-file": model}) for _, user, model in pairs]
    print(f"load: {args.algorithm} on {source}; {os.cpu_count()} cores; waitress threads {args.threads}, "
          f"slots {args.slots}, opencv_threads {args.opencv_threads}, "
          f"parallel_sides {not args.no_parallel_sides}, workers {args.workers}, "
          f"surf_processes {'default' if args.surf_processes is None else args.surf_processes}")
    with tempfile.TemporaryDirectory() as folder:
        process = None
        if args.url_port:
            port = args.url_port
        else:
            process, port = start_server(args, folder)
        try:
            pid = process.pid if process else None
            results = []
            for pipeline in args.pipelines:
                run(port, bodies, 1, len(bodies), args.algorithm, pipeline, pid)  # warm-up
                for clients in args.clients:
                    figures = run(port, bodies, clients, args.requests, args.algorithm, pipeline, pid)
                    results.append({"pipeline": pipeline, **figures})
        finally:
            peak = peak_rss_mb(process.pid) if process else float("nan")
            if process:
                process.terminate()
                process.wait(timeout=60)
    print(f"{'pipeline':<8} {'clients':>7} {'req':>5} {'req/s':>7} {'x1':>5} {'req/s/core':>10} {'p50 s':>7} "
          f"{'p95 s':>7} {'p99 s':>7} {'p99/p50':>7}  statuses")
    for result in results:
        base = next(r["throughput"] for r in results if r["pipeline"] == result["pipeline"])
        print(
            f"{result['pipeline']:<8} {result['clients']:>7} {result['requests']:>5} {result['throughput']:>7.2f} "
            f"{result['throughput'] / base:>5.2f} {result['per_core']:>10.2f} {result['p50']:>7.3f} "
            f"{result['p95']:>7.3f} {result['p99']:>7.3f} {result['p99'] / result['p50']:>7.2f}  "
            f"{json.dumps(result['statuses'])}"
        )
    print("req/s/core: requests per second of server CPU time (every thread), "
          "which other work on the machine does not distort")
    print(f"server peak resident memory: {peak:.0f} MB")


if __name__ == "__main__":
    main()
