"""Time our SURF against OpenCV's SIFT, one thread each.

Run as ``python benchmarks/bench_surf.py``.  Prints, for the same images in
one run: median detectAndCompute time and keypoint counts of both detectors
on 700x700 images, the ratio ours/SIFT, then our time and peak traced memory
versus image side (350..2800 px) with time per megapixel to show linearity.
"""

import os

# Pin BLAS/OpenMP pools before numpy loads, so both sides run on one thread.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import statistics  # noqa: E402
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
REPEATS = 5


def textured(side, seed=3):
    """A cratered synthetic grey image of the given side."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.normal(110, 35, (side // 10 + 1, side // 10 + 1)).astype(np.float32),
                      (side, side), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(400 * (side / 700) ** 2)):
        cx, cy = rng.uniform(0, side, 2)
        r = rng.uniform(3, 30) * side / 700
        cv2.circle(base, (int(cx), int(cy)), max(1, int(r)), float(rng.uniform(30, 230)), -1)
    return np.clip(cv2.GaussianBlur(base, (0, 0), 1.2), 0, 255).astype(np.uint8)


def to_700(img):
    """Centre-crop to a square, then resize to 700x700."""
    h, w = img.shape
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return cv2.resize(img[y0:y0 + s, x0:x0 + s], (700, 700), interpolation=cv2.INTER_AREA)


def median_time(fn, img, repeats=REPEATS):
    fn(img)  # warm-up
    times, n = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        kps, _ = fn(img)
        times.append(time.perf_counter() - t0)
        n = len(kps)
    return statistics.median(times), n


def main():
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

    print("700x700, one thread, median of", REPEATS)
    print(f"{'image':28s} {'ours s':>8s} {'kp':>6s} {'SIFT s':>8s} {'kp':>6s} {'ours/SIFT':>9s}")
    ratios = []
    for name, img in images:
        t_ours, n_ours = median_time(surf.detectAndCompute, img)
        t_sift, n_sift = median_time(lambda im: sift.detectAndCompute(im, None), img)
        ratios.append(t_ours / t_sift)
        print(f"{name:28s} {t_ours:8.3f} {n_ours:6d} {t_sift:8.3f} {n_sift:6d} {t_ours / t_sift:9.2f}")
    print(f"median ratio ours/SIFT: {statistics.median(ratios):.2f}")

    print("\nscaling (synthetic textured image), ours")
    print(f"{'side':>6s} {'MPix':>6s} {'time s':>8s} {'s/MPix':>8s} {'kp':>6s} {'peak MiB':>9s}")
    for side in (350, 700, 1400, 2800):
        img = textured(side)
        t, n = median_time(surf.detectAndCompute, img, repeats=3 if side < 2800 else 1)
        tracemalloc.start()
        surf.detectAndCompute(img)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        mpix = side * side / 1e6
        print(f"{side:6d} {mpix:6.2f} {t:8.3f} {t / mpix:8.3f} {n:6d} {peak / 2**20:9.1f}")


if __name__ == "__main__":
    main()
