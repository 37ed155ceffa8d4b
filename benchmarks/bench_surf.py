"""Time our SURF against OpenCV's SIFT, one thread each.

Run as ``python benchmarks/bench_surf.py`` (``--quick`` for fewer repeats and
no 2800 px size).  Prints:

1. 700x700 images (the real photos in ``../shared/data/surf/*-gray.png``,
   centre-cropped and resized, plus a generated textured image): median
   ``detectAndCompute`` time and keypoint count of both detectors and the
   ratio ours/SIFT.  Ours and SIFT runs alternate, so a busy machine slows
   both alike; the ratio is given on wall-clock and on process CPU time (the
   CPU figure is the steadier one when other jobs share the machine).
2. Scaling with image side 350..2800 px, each size in its own subprocess so
   sizes do not pollute each other's memory: median time, s/MPix, keypoints
   per MPix, peak traced (tracemalloc: NumPy and Python) memory of one run,
   and the growth of the process's peak RSS over one run.  Two images:
   ``textured`` (the generated image of table 1, whose craters grow with the
   side, so larger sides hold fewer but larger features) and ``stationary``
   (craters of fixed pixel size, density proportional to area: the same work
   per pixel at every side, which is what shows whether the time is linear).

Every timing is the median of ``REPEATS`` runs after one warm-up, with
``cv2.setNumThreads(1)`` and the BLAS/OpenMP pools pinned to one thread before
NumPy is imported.
"""

import os

# Pin BLAS/OpenMP pools before numpy loads, so both sides run on one thread.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from moontrek.registration.surf import SURF  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "surf"
REPEATS = 7
SIDES = (350, 700, 1400, 2800)


def textured(side, seed=3):
    """A cratered synthetic grey image of the given side (craters scale with the side)."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.normal(110, 35, (side // 10 + 1, side // 10 + 1)).astype(np.float32),
                      (side, side), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(400 * (side / 700) ** 2)):
        cx, cy = rng.uniform(0, side, 2)
        r = rng.uniform(3, 30) * side / 700
        cv2.circle(base, (int(cx), int(cy)), max(1, int(r)), float(rng.uniform(30, 230)), -1)
    return np.clip(cv2.GaussianBlur(base, (0, 0), 1.2), 0, 255).astype(np.uint8)


def stationary(side, seed=11):
    """A cratered grey image whose statistics do not depend on the side.

    Background noise of a fixed correlation length and craters of fixed pixel
    radii (3..30 px), 400 per 700x700 px: the work per pixel is the same at
    every side.
    """
    rng = np.random.default_rng(seed)
    cells = side // 10 + 1
    base = cv2.resize(rng.normal(110, 35, (cells, cells)).astype(np.float32),
                      (cells * 10, cells * 10), interpolation=cv2.INTER_CUBIC)[:side, :side]
    base = np.ascontiguousarray(base)
    for _ in range(int(400 * (side / 700) ** 2)):
        cx, cy = rng.uniform(0, side, 2)
        r = rng.uniform(3, 30)
        cv2.circle(base, (int(cx), int(cy)), int(r), float(rng.uniform(30, 230)), -1)
    return np.clip(cv2.GaussianBlur(base, (0, 0), 1.2), 0, 255).astype(np.uint8)


GENERATORS = {"textured": textured, "stationary": stationary}


def to_700(img):
    """Centre-crop to a square, then resize to 700x700."""
    h, w = img.shape
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return cv2.resize(img[y0:y0 + s, x0:x0 + s], (700, 700), interpolation=cv2.INTER_AREA)


def _timed(fn, img):
    w0, c0 = time.perf_counter(), time.process_time()
    kps, _ = fn(img)
    return time.perf_counter() - w0, time.process_time() - c0, len(kps)


def compare(fns, img, repeats):
    """Median (wall, cpu) seconds and keypoint count per function, runs interleaved."""
    for fn in fns:
        fn(img)  # warm-up
    runs = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            runs[k].append(_timed(fn, img))
    return [(statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs), rs[-1][2])
            for rs in runs]


def worker(kind, side, repeats):
    """Measure one image size in this (fresh) process; print one JSON line."""
    cv2.setNumThreads(1)
    img = GENERATORS[kind](side)
    surf = SURF()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    [(wall, cpu, n)] = compare([surf.detectAndCompute], img, repeats)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    surf.detectAndCompute(img)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(json.dumps(dict(side=side, wall=wall, cpu=cpu, kp=n, traced_peak=peak,
                          rss_growth_kib=rss1 - rss0, image_f32_bytes=img.size * 4)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats, sides up to 1400")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "SIDE"), help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=None, help=f"timed runs (default {REPEATS})")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else REPEATS)
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), repeats)
        return

    cv2.setNumThreads(1)
    surf = SURF()
    sift = cv2.SIFT_create()
    images = []
    if SHARED.exists():
        for path in sorted(SHARED.glob("*-gray.png")):
            images.append((path.name, to_700(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))))
    else:
        print(f"skipping real photos: {SHARED} is absent")
    images.append(("synthetic-textured", textured(700)))

    print(f"700x700, one thread, median of {repeats} (ours and SIFT interleaved)")
    print(f"{'image':24s} {'ours s':>7s} {'kp':>5s} {'SIFT s':>7s} {'kp':>5s} "
          f"{'ours/SIFT':>9s} {'(CPU time)':>10s}")
    ratios, cpu_ratios = [], []
    for name, img in images:
        (w_o, c_o, n_o), (w_s, c_s, n_s) = compare(
            [surf.detectAndCompute, lambda im: sift.detectAndCompute(im, None)], img, repeats)
        ratios.append(w_o / w_s)
        cpu_ratios.append(c_o / c_s)
        print(f"{name:24s} {w_o:7.3f} {n_o:5d} {w_s:7.3f} {n_s:5d} {w_o / w_s:9.2f} "
              f"{c_o / c_s:10.2f}")
    print(f"median ratio ours/SIFT: {statistics.median(ratios):.2f} "
          f"(CPU time {statistics.median(cpu_ratios):.2f})")

    sides = [s for s in SIDES if not (args.quick and s > 1400)]
    for kind in GENERATORS:
        print(f"\nscaling ({kind} image), ours, one subprocess per size")
        print(f"{'side':>6s} {'MPix':>6s} {'time s':>8s} {'s/MPix':>7s} {'CPU s/MPix':>10s} "
              f"{'kp':>6s} {'kp/MPix':>7s} {'peak MiB':>9s} {'x img f32':>9s} {'RSS+ MiB':>8s}")
        for side in sides:
            out = subprocess.run(
                [sys.executable, __file__, "--worker", kind, str(side), "--repeats", str(repeats)],
                check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            mpix = side * side / 1e6
            peak = r["traced_peak"] / 2**20
            print(f"{side:6d} {mpix:6.2f} {r['wall']:8.3f} {r['wall'] / mpix:7.3f} "
                  f"{r['cpu'] / mpix:10.3f} {r['kp']:6d} {r['kp'] / mpix:7.0f} {peak:9.1f} "
                  f"{r['traced_peak'] / r['image_f32_bytes']:9.1f} "
                  f"{r['rss_growth_kib'] / 1024:8.1f}")


if __name__ == "__main__":
    main()
