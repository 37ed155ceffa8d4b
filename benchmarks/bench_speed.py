"""Request speed against the original server's algorithm, interleaved in one run.

For each pair and algorithm, request by request in turn, it times:

* ``baseline``: a standalone re-implementation of the original server's
  (MoonRegistration 1.0.3) work, written here and not shared with moontrek:
  ``cv2.imdecode(IMREAD_COLOR)`` of both files, the model resized by the
  v1.0.3 fitting rule with INTER_AREA, grey, ``detectAndCompute`` on the
  full-size images, brute-force ``knnMatch`` k=2, the 0.85 ratio test, the
  0.9-of-half-width radius filter, ``findHomography`` RANSAC 5.0, with
  OpenCV's default threading as the original ran it;
* ``in-process``: ``moontrek.registration.register`` on the same bytes, with
  the server's settings (reduced JPEG decoding, one OpenCV thread);
* ``HTTP``: the whole request (multipart, decode, pipeline, JSON) against a
  real ``moontrek serve`` started here on the default config (only the rate
  limit raised and the log sent to a temporary folder).

The original used OpenCV's C++ SURF, absent from PyPI's OpenCV: its baseline
is the SIFT baseline with the detection part scaled by ``SURF_OVER_SIFT``
(OpenCV's SURF costs 1.3-1.9x OpenCV's SIFT on 700x700 images; the low end
is the strict choice). The benchmark prints that in its output.

Pairs: the three demo pairs when ../shared/data/registrate is present, and
generated pairs (client crops of 300 and 700 px as PNG, phone photos of 3 and
12 Mpx as JPEG, each against a 2000 x 2000 RGBA PNG render).

    python benchmarks/bench_speed.py [--rounds 5] [--algorithms SIFT ORB] [--sets demo generated]

Medians per pair and algorithm, then the ratios HTTP/baseline and
in-process/baseline per algorithm with their geometric mean over pairs;
once in wall-clock time, and once in CPU time (every thread of this process;
for HTTP, every thread of the server; both with the processes under them,
where our SURF's workers run), which a busy shared machine disturbs far
less. In-process runs with the server's default ``surf_processes`` too.
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
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from moontrek.config import DEFAULTS  # noqa: E402
from moontrek.registration import fitted_size, register, surf_pool  # noqa: E402
from moontrek.registration.errors import RegistrationError  # noqa: E402
from moontrek.synthetic import make_pair, perturb_photo, render_moon  # noqa: E402
from tests.conftest import multipart  # noqa: E402

from load import server_cpu_seconds  # noqa: E402  (benchmarks/load.py, beside this script)

SHARED = ROOT.parent / "shared" / "data" / "registrate"
ALGORITHMS = ("SIFT", "ORB", "AKAZE", "BRISK", "SURF")
SURF_OVER_SIFT = 1.3

# --- The original server's algorithm, standalone. --------------------------

_BASELINE_CREATE = {
    "SIFT": lambda: cv2.SIFT_create(),
    "ORB": lambda: cv2.ORB_create(),
    "AKAZE": lambda: _constructor("AKAZE_create")(),
    "BRISK": lambda: _constructor("BRISK_create")(),
}


def _constructor(name):
    for module in (cv2, getattr(cv2, "xfeatures2d", None)):
        if module is not None and hasattr(module, name):
            return getattr(module, name)
    raise SystemExit(f"this OpenCV has no {name}")


def _within(points, width, height):
    centre = np.array([width / 2.0, height / 2.0])
    return np.hypot(*(points - centre).T) < 0.9 * width / 2.0


def baseline(user_bytes, model_bytes, algorithm):
    """The original's request work; returns (seconds spent in detectAndCompute, homography or None)."""
    user = cv2.imdecode(np.frombuffer(user_bytes, np.uint8), cv2.IMREAD_COLOR)
    model = cv2.imdecode(np.frombuffer(model_bytes, np.uint8), cv2.IMREAD_COLOR)
    size = fitted_size(model.shape[1], model.shape[0], user.shape[1], user.shape[0])
    if size != (model.shape[1], model.shape[0]):
        model = cv2.resize(model, size, interpolation=cv2.INTER_AREA)
    user_grey = cv2.cvtColor(user, cv2.COLOR_BGR2GRAY)
    model_grey = cv2.cvtColor(model, cv2.COLOR_BGR2GRAY)
    detector = _BASELINE_CREATE["SIFT" if algorithm == "SURF" else algorithm]()
    started = time.perf_counter()
    user_kp, user_desc = detector.detectAndCompute(user_grey, None)
    model_kp, model_desc = detector.detectAndCompute(model_grey, None)
    detecting = time.perf_counter() - started
    if user_desc is None or model_desc is None or len(model_desc) < 2:
        return detecting, None
    pairs = cv2.BFMatcher(detector.defaultNorm()).knnMatch(user_desc, model_desc, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.85 * p[1].distance]
    src = np.float32([user_kp[m.queryIdx].pt for m in good]).reshape(-1, 2)
    dst = np.float32([model_kp[m.trainIdx].pt for m in good]).reshape(-1, 2)
    keep = _within(src, user.shape[1], user.shape[0]) & _within(dst, model.shape[1], model.shape[0])
    src, dst = src[keep], dst[keep]
    if len(src) < 4:
        return detecting, None
    homography, _ = cv2.findHomography(src, dst, cv2.RANSAC, 5.0)
    return detecting, homography


# --- Pairs. ----------------------------------------------------------------


def _png(image):
    return cv2.imencode(".png", image)[1].tobytes()


def _jpeg(image, quality=90):
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def demo_pairs():
    if not SHARED.is_dir():
        print(f"demo pairs skipped: {SHARED} is absent")
        return []
    return [
        (f"demo {n}", (SHARED / f"{n}-userImage.png").read_bytes(), (SHARED / f"{n}-modelImage.png").read_bytes())
        for n in ("01", "02", "03")
    ]


def generated_pairs():
    """Client crops and phone photos against one 2000 x 2000 RGBA render."""
    render = render_moon(2000, seed=11)
    alpha = np.full(render.shape[:2], 255, np.uint8)
    model = _png(np.dstack([render, alpha]))
    rng = np.random.default_rng(5)
    pairs = []
    # Client crops: the disk fills a square with ceil(0.15 r) of padding.
    for side in (300, 700):
        scale = side / (1.15 * 0.92 * 2000)
        pair = make_pair(render, angle=35.0, scale=scale, user_size=(side, side))
        photo = perturb_photo(pair.user, rng, cast=(0.8, 0.95, 1.1), gamma=0.9, noise=3.0, flatten=0.6)
        pairs.append((f"crop {side} px PNG", _png(photo), model))
    # Phone photos: the Moon 40% and 25% of the short side across.
    for (width, height), across in (((2000, 1500), 0.4), ((4032, 3024), 0.25)):
        radius = across * min(width, height) / 2.0
        scale = radius / (0.46 * 2000)
        pair = make_pair(render, angle=-20.0, scale=scale, shift=(0.1 * width, -0.05 * height), user_size=(width, height))
        photo = perturb_photo(pair.user, rng, cast=(0.7, 0.9, 1.1), gamma=1.1, noise=2.0, sky=(40, 25, 15), flatten=0.7)
        pairs.append((f"photo {width * height / 1e6:.0f} Mpx JPEG", _jpeg(photo), model))
    return pairs


# --- The server. -------------------------------------------------------------


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(folder):
    port = _free_port()
    config = Path(folder) / "config.py"
    config.write_text(
        "CONFIG = {\n"
        f"    'log_filepath': {str(Path(folder) / 'moontrek.log')!r},\n"
        "    'logging_level': 'WARNING',\n"
        "    'default_rate_limits': ['1000000 per day'],\n"
        "}\n"
    )
    command = [sys.executable, "-m", "moontrek", "serve", "--config", str(config), "--port", str(port)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/api/health")
            if connection.getresponse().status == 200:
                return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not start")


def post(port, algorithm, body, headers):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", f"/api/registrar/{algorithm}", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


# --- Timing. -----------------------------------------------------------------


def _timed(function, pid=None):
    """(wall seconds, CPU seconds, value): CPU of this process, or of
    process ``pid``, every thread of it and of the processes under it (our
    SURF's workers: see surf_pool)."""
    pid = pid or os.getpid()
    started, started_cpu = time.perf_counter(), server_cpu_seconds(pid)
    value = function()
    return time.perf_counter() - started, server_cpu_seconds(pid) - started_cpu, value


KINDS = ("baseline", "in-process", "HTTP")


def measure(pairs, algorithms, rounds, port, pid):
    """{(pair, algorithm): {kind: [wall s], kind + " CPU": [CPU s]}} and the outcomes."""
    times, outcomes = {}, {}
    for round_ in range(rounds + 1):  # round 0 warms every path up and is dropped
        for name, user, model in pairs:
            body, headers = multipart({"user-file": user, "model-file": model})
            for algorithm in algorithms:
                slot = times.setdefault((name, algorithm), {k: [] for kind in KINDS for k in (kind, kind + " CPU")})
                # Baseline with OpenCV's default threads, moontrek with the server's one.
                cv2.setNumThreads(-1)
                elapsed, cpu, (detecting, _) = _timed(lambda: baseline(user, model, algorithm))
                if algorithm == "SURF":
                    elapsed += (SURF_OVER_SIFT - 1.0) * detecting
                    cpu += (SURF_OVER_SIFT - 1.0) * detecting
                cv2.setNumThreads(1)
                try:
                    inproc, inproc_cpu, result = _timed(
                        lambda: register(user, model, algorithm, reduced_decode=True)
                    )
                    outcome = f"{result.inliers} inliers"
                except RegistrationError as exc:
                    inproc = inproc_cpu = float("nan")
                    outcome = str(exc)
                over_http = http_cpu = float("nan")
                if port:
                    over_http, http_cpu, (status, answer) = _timed(lambda: post(port, algorithm, body, headers), pid)
                    if status != 200:
                        outcome += f"; HTTP {status} {answer.get('error')}"
                if round_:
                    for kind, wall, used in zip(KINDS, (elapsed, inproc, over_http), (cpu, inproc_cpu, http_cpu)):
                        slot[kind].append(wall)
                        slot[kind + " CPU"].append(used)
                outcomes[(name, algorithm)] = outcome
    return times, outcomes


def geomean(values):
    values = [v for v in values if np.isfinite(v) and v > 0]
    return float(np.exp(np.mean(np.log(values)))) if values else float("nan")


def report(times, outcomes, algorithms, port):
    names = list(dict.fromkeys(name for name, _ in times))
    last = "HTTP" if port else "in-process"
    for suffix, title in (("", "wall-clock"), (" CPU", "CPU time (every thread; the HTTP column is the server's)")):
        print(f"\n{title}, medians in ms")
        print(f"{'pair':<20} {'algorithm':<9} {'baseline':>9} {'in-proc':>8} {'HTTP':>8} "
              f"{'inproc/base':>11} {'HTTP/base':>9}  outcome")
        ratios = {algorithm: {kind: [] for kind in KINDS[1:]} for algorithm in algorithms}
        for name in names:
            for algorithm in algorithms:
                slot = times[(name, algorithm)]
                base, inproc, over_http = (statistics.median(slot[k + suffix]) * 1000 for k in KINDS)
                ratios[algorithm]["in-process"].append(inproc / base)
                ratios[algorithm]["HTTP"].append(over_http / base)
                print(f"{name:<20} {algorithm:<9} {base:>9.1f} {inproc:>8.1f} {over_http:>8.1f} "
                      f"{inproc / base:>11.2f} {over_http / base:>9.2f}  {outcomes[(name, algorithm)]}")
        print(f"\n{title}: geometric mean of the ratios over the pairs above")
        print(f"{'algorithm':<9} {'inproc/base':>11} {'HTTP/base':>9}")
        for algorithm in algorithms:
            print(f"{algorithm:<9} {geomean(ratios[algorithm]['in-process']):>11.2f} "
                  f"{geomean(ratios[algorithm]['HTTP']):>9.2f}")
        every = [r for a in algorithms for r in ratios[a][last]]
        print(f"{'all':<9} {last}/baseline: {geomean(every):.2f}")
    if "SURF" in algorithms:
        print(f"\nSURF's baseline is OpenCV's SIFT baseline with its detection time x{SURF_OVER_SIFT} "
              "(PyPI's OpenCV has no SURF; the original's C++ SURF costs 1.3-1.9x SIFT).")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed requests per pair and algorithm")
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), type=str.upper)
    parser.add_argument("--sets", nargs="+", default=["demo", "generated"], choices=["demo", "generated"])
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP column (no server started)")
    args = parser.parse_args(argv)

    pairs = []
    if "demo" in args.sets:
        pairs += demo_pairs()
    if "generated" in args.sets:
        pairs += generated_pairs()
    print(f"bench_speed: {len(pairs)} pairs, {args.rounds} rounds, {os.cpu_count()} cores, OpenCV {cv2.__version__}; "
          "baseline, in-process and HTTP interleaved request by request")
    surf_pool.start(DEFAULTS["surf_processes"])
    with tempfile.TemporaryDirectory() as folder:
        process, port = (None, None) if args.no_http else start_server(folder)
        try:
            times, outcomes = measure(pairs, args.algorithms, args.rounds, port, process.pid if process else None)
        finally:
            surf_pool.stop()
            if process:
                process.terminate()
                process.wait(timeout=60)
    report(times, outcomes, args.algorithms, port)


if __name__ == "__main__":
    main()
