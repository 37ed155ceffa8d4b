"""Time our SURF against OpenCV's SIFT, one OpenCV thread each.

Run as ``python benchmarks/bench_surf.py`` (``--quick`` for fewer repeats,
``--scaling`` to add the image-side table).  Prints:

1. 700x700 images: the real photos in ``../shared/data/surf/*-gray.png`` and
   ``../shared/data/registrate`` (centre-cropped, resized), Moons generated
   by ``moontrek.synthetic.render_moon`` (several seeds) and a generated
   textured image.  Median ``detectAndCompute`` time and keypoint count of
   ours and of ``cv2.SIFT_create()`` (defaults), the ratio ours/SIFT per
   image, and the median and maximum ratio.  Ours and SIFT runs alternate,
   so a busy machine slows both alike; the ratio is given on wall-clock and
   on the thread's CPU time (the steadier one when other jobs share the
   machine).
2. Where our time goes: median time per stage (detection, orientation,
   descriptor windows, descriptor pooling) on the same images.
3. The moon pipeline's use: each disk resampled to the working canvas
   (``WORK_RADIUS`` 200, ~432x432) by ``normalise_disk`` and detected with
   its mask, ours against SIFT with defaults and SIFT as the pipeline
   configures it (``nfeatures=MAX_FEATURES``).
4. Threads: N threads each describing its own images against one thread,
   throughput ratio (ours and SIFT), which shows how much of the work runs
   without the GIL.
5. Peak memory of one 700x700 run (tracemalloc: NumPy and Python).
6. With ``--scaling``: time against image side 350..2800 px, each size in its
   own subprocess.

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
import threading  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from moontrek.registration import surf as surf_mod  # noqa: E402
from moontrek.registration.surf import SURF  # noqa: E402
from moontrek.synthetic import render_moon  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
REPEATS = 7
SIDES = (350, 700, 1400, 2800)
MOON_SEEDS = (0, 1, 2, 3)


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


def grey(bgr):
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr


def images_700():
    """(name, 700x700 grey image) for every development image at hand."""
    images = []
    surf_dir, reg_dir = SHARED / "surf", SHARED / "registrate"
    if surf_dir.exists():
        for path in sorted(surf_dir.glob("*-gray.png")):
            images.append((path.name, to_700(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))))
    else:
        print(f"skipping the SURF reference photos: {surf_dir} is absent")
    if reg_dir.exists():
        for path in sorted(reg_dir.glob("*-userImage.png")) + sorted(reg_dir.glob("*-modelImage.png")):
            images.append((f"registrate/{path.name}", to_700(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))))
    else:
        print(f"skipping the demo pairs: {reg_dir} is absent")
    for seed in MOON_SEEDS:
        images.append((f"render_moon seed {seed}", grey(render_moon(700, seed=seed))))
    images.append(("synthetic-textured", textured(700)))
    return images


def pipeline_canvases():
    """(name, canvas, mask): disks resampled and normalised as the moon pipeline does."""
    from moontrek.registration.moon_pipeline import WORK_RADIUS, _find_moon_fast, normalise_disk

    sources = []
    reg_dir = SHARED / "registrate"
    if reg_dir.exists():
        for path in sorted(reg_dir.glob("*-userImage.png")) + sorted(reg_dir.glob("*-modelImage.png")):
            sources.append((path.name, cv2.imread(str(path), cv2.IMREAD_COLOR)))
    for seed in MOON_SEEDS:
        sources.append((f"render_moon seed {seed}", render_moon(1000, seed=seed)))
    out = []
    for name, bgr in sources:
        circle = _find_moon_fast(bgr)
        canvas, mask, _ = normalise_disk(bgr, circle, WORK_RADIUS)
        out.append((name, canvas, mask))
    return out


def _timed(fn, img):
    w0, c0 = time.perf_counter(), time.thread_time()
    kps, _ = fn(img)
    return time.perf_counter() - w0, time.thread_time() - c0, len(kps)


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


def _summary(label, ratios, cpu_ratios):
    print(f"{label}: median {statistics.median(ratios):.2f}, max {max(ratios):.2f} "
          f"(CPU time: median {statistics.median(cpu_ratios):.2f}, max {max(cpu_ratios):.2f})")


def table_700(images, repeats):
    surf = SURF()
    sift = cv2.SIFT_create()
    print(f"700x700, one thread, median of {repeats} (ours and SIFT interleaved)")
    print(f"{'image':34s} {'ours s':>7s} {'kp':>5s} {'SIFT s':>7s} {'kp':>5s} "
          f"{'ours/SIFT':>9s} {'(CPU time)':>10s}")
    ratios, cpu_ratios = [], []
    for name, img in images:
        (w_o, c_o, n_o), (w_s, c_s, n_s) = compare(
            [surf.detectAndCompute, lambda im: sift.detectAndCompute(im, None)], img, repeats)
        ratios.append(w_o / w_s)
        cpu_ratios.append(c_o / c_s)
        print(f"{name:34s} {w_o:7.3f} {n_o:5d} {w_s:7.3f} {n_s:5d} {w_o / w_s:9.2f} "
              f"{c_o / c_s:10.2f}")
    _summary("ratio ours/SIFT", ratios, cpu_ratios)


STAGES = {
    "detect": "_detect",
    "orientation": "_orientation",
    "windows": "_windows_oriented",
    "pooling": "_descriptors_from_patches",
}


def table_stages(images, repeats):
    """Thread CPU time per stage, by wrapping the module's stage functions."""
    spent = {}
    originals = {stage: getattr(surf_mod, name) for stage, name in STAGES.items()}

    def wrap(stage, fn):
        def timed(*args, **kwargs):
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[stage] = spent.get(stage, 0.0) + time.thread_time() - t0
        return timed

    surf = SURF()
    print(f"\nour stages, thread CPU ms, median of {repeats}")
    print(f"{'image':34s} {'total':>6s} " + " ".join(f"{s:>11s}" for s in STAGES))
    try:
        for stage, name in STAGES.items():
            setattr(surf_mod, name, wrap(stage, originals[stage]))
        for name, img in images:
            surf.detectAndCompute(img)
            rows = []
            for _ in range(repeats):
                spent.clear()
                t0 = time.thread_time()
                surf.detectAndCompute(img)
                rows.append((time.thread_time() - t0, dict(spent)))
            total = statistics.median(r[0] for r in rows)
            med = {s: statistics.median(r[1].get(s, 0.0) for r in rows) for s in STAGES}
            print(f"{name:34s} {total * 1e3:6.0f} "
                  + " ".join(f"{med[s] * 1e3:11.0f}" for s in STAGES))
    finally:
        for stage, name in STAGES.items():
            setattr(surf_mod, name, originals[stage])


def _strongest(surf, n):
    """detectAndCompute keeping the n strongest keypoints, as SIFT's nfeatures does."""
    def run(im, mask):
        kps = surf.detect(im, mask)
        kps = sorted(kps, key=lambda k: -k.response)[:n]
        return surf.compute(im, kps)
    return run


def table_pipeline(repeats):
    """Ours on the pipeline's canvases, against SIFT, plus two cheaper settings to consider."""
    from moontrek.registration.moon_pipeline import MAX_FEATURES

    canvases = pipeline_canvases()
    surf = SURF()
    sift = cv2.SIFT_create()
    sift_capped = cv2.SIFT_create(nfeatures=MAX_FEATURES)
    variants = {
        "ours": lambda im, m: surf.detectAndCompute(im, m),
        "SIFT": lambda im, m: sift.detectAndCompute(im, m),
        f"SIFT{MAX_FEATURES}": lambda im, m: sift_capped.detectAndCompute(im, m),
        "ours 3 oct": lambda im, m, s3=SURF(nOctaves=3): s3.detectAndCompute(im, m),
        f"ours {MAX_FEATURES}": _strongest(surf, MAX_FEATURES),
    }
    names = list(variants)
    print(f"\nmoon pipeline canvases (normalise_disk, masked), median of {repeats}: seconds, "
          "keypoints, and ratios to SIFT (wall / thread CPU)")
    print(f"{'disk':26s} {'side':>4s} " + " ".join(f"{n:>15s}" for n in names))
    ratios = {(a, b): ([], []) for a in names if a.startswith("ours")
              for b in ("SIFT", f"SIFT{MAX_FEATURES}")}
    for name, canvas, mask in canvases:
        res = compare([lambda im, f=f: f(im, mask) for f in variants.values()], canvas, repeats)
        by = dict(zip(names, res))
        print(f"{name:26s} {canvas.shape[0]:4d} "
              + " ".join(f"{w:8.3f} {n:6d}" for w, _, n in res))
        for (a, b), (rw, rc) in ratios.items():
            rw.append(by[a][0] / by[b][0])
            rc.append(by[a][1] / by[b][1])
    for (a, b), (rw, rc) in ratios.items():
        _summary(f"{a} / {b}", rw, rc)


def _throughput(make, images, threads, jobs):
    """Images described per second by `threads` threads sharing `jobs` jobs."""
    lock = threading.Lock()
    queue = list(range(jobs))

    def work():
        det = make()
        while True:
            with lock:
                if not queue:
                    return
                k = queue.pop()
            det(images[k % len(images)])

    pool = [threading.Thread(target=work) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return jobs / (time.perf_counter() - t0)


def table_threads(images, jobs, counts=(1, 2, 4)):
    imgs = [img for _, img in images]
    makers = {
        "ours": lambda: SURF().detectAndCompute,
        "SIFT": lambda: (lambda s: (lambda im: s.detectAndCompute(im, None)))(cv2.SIFT_create()),
    }
    print(f"\nthreads (each on its own images, one OpenCV thread each, {jobs} images a run, "
          f"{os.cpu_count()} cores): images/s and ratio to one thread")
    print(f"{'detector':8s} " + " ".join(f"{f'{n} thr':>14s}" for n in counts))
    for label, make in makers.items():
        _throughput(make, imgs, 1, 2)  # warm-up
        rates = {}
        # Alternate thread counts so a burst of outside load hits all alike.
        for _ in range(2):
            for n in counts:
                rates.setdefault(n, []).append(_throughput(make, imgs, n, jobs))
        best = {n: max(r) for n, r in rates.items()}
        print(f"{label:8s} " + " ".join(f"{best[n]:6.2f} ({best[n] / best[counts[0]]:4.2f}x)"
                                        for n in counts))


def table_memory(images):
    surf = SURF()
    print("\npeak traced memory of one detectAndCompute (NumPy + Python), 700x700")
    for name, img in images[:3]:
        surf.detectAndCompute(img)
        tracemalloc.start()
        surf.detectAndCompute(img)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"{name:34s} {peak / 2**20:6.1f} MiB ({peak / (img.size * 4):.1f}x the image in float32)")


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


def table_scaling(sides, repeats):
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats, fewer threaded jobs")
    parser.add_argument("--scaling", action="store_true", help="add the image-side table")
    parser.add_argument("--only", choices=("700", "stages", "pipeline", "threads", "memory"),
                        action="append", help="run only these tables (repeatable)")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "SIDE"), help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=None, help=f"timed runs (default {REPEATS})")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else REPEATS)
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), repeats)
        return

    cv2.setNumThreads(1)
    only = set(args.only or ("700", "stages", "pipeline", "threads", "memory"))
    images = images_700()
    if "700" in only:
        table_700(images, repeats)
    if "stages" in only:
        table_stages(images, repeats)
    if "pipeline" in only:
        table_pipeline(repeats)
    if "threads" in only:
        table_threads(images, 12 if args.quick else 24)
    if "memory" in only:
        table_memory(images)
    if args.scaling:
        table_scaling([s for s in SIDES if not (args.quick and s > 1400)], repeats)


if __name__ == "__main__":
    main()
