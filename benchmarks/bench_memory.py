"""Peak memory of one registration, each measured in a fresh process.

    python benchmarks/bench_memory.py [--algorithms ORB SIFT] [--pairs demo generated]

For each pair and algorithm, a subprocess imports moontrek, reads the two
files, registers a small generated pair once (so the detectors, the decode
pool and OpenCV's own buffers exist, as in a running server), then registers
the pair and reports the rise of its peak resident memory (``VmHWM`` after resetting it with ``/proc/self/clear_refs``, Linux)
and the peak of NumPy's and Python's allocations (``tracemalloc``) during
that one call (RSS moves by whole pages and allocator arenas: differences
of a few MB are noise). Variants, each in its own process:

* ``default``: ``register(..., reduced_decode=True)`` as the server runs it
  (a request alone: the model's side prepared on the pool meanwhile);
* ``sequential``: the same with both sides on one thread, as under load;
* ``opencv-png``: the fast PNG path switched off (every PNG through
  ``cv2.imdecode``), the decoder used before it.

``--compare DIR`` adds the default variant of the code in DIR (a worktree of
an earlier commit, say), for before/after figures.

Pairs: the demo pairs (``../shared/data/registrate``, skipped when absent)
and generated ones: a 700 px client crop as PNG and a 12 Mpx phone photo as
JPEG, each against a 2000 x 2000 RGBA PNG render.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "data" / "registrate"
VARIANTS = ("default", "sequential", "opencv-png")

CHILD = r"""
import json, sys, tracemalloc
sys.path.insert(0, {root!r})
import cv2
cv2.setNumThreads(1)
from moontrek.registration import engine, register
try:
    from moontrek.registration import png
except ImportError:  # an earlier checkout (--compare)
    png = None
from moontrek.registration.errors import RegistrationError
from moontrek.synthetic import encode, make_pair, render_moon, to_rgba_render

variant, algorithm, user_path, model_path = sys.argv[1:5]
if variant == "sequential":
    engine._alone = lambda: False
if variant == "opencv-png":
    png.decode = lambda data: None
user, model = open(user_path, "rb").read(), open(model_path, "rb").read()
small = render_moon(400, seed=1)
warm = make_pair(small, angle=20.0, scale=0.8, user_size=(300, 300))
try:
    register(encode(warm.user), encode(to_rgba_render(warm.model)), algorithm, reduced_decode=True)
except RegistrationError:
    pass
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
# Reset the peak resident size to the current one (Linux: clear_refs 5),
# so the peak after the call is this call's own.
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")
before = status("VmRSS")
tracemalloc.start()
try:
    register(user, model, algorithm, reduced_decode=True)
    outcome = "ok"
except RegistrationError as exc:
    outcome = type(exc).__name__
traced = tracemalloc.get_traced_memory()[1]
after = status("VmHWM")
print(json.dumps({{"rss_rise_mb": (after - before) / 1024, "traced_mb": traced / 2**20, "outcome": outcome}}))
"""


def generated_pairs(folder):
    import numpy as np

    from moontrek.synthetic import encode, make_phone_photo, make_pair, perturb_photo, render_moon, to_rgba_render

    model = render_moon(2000, seed=21)
    render = encode(to_rgba_render(model))
    crop = perturb_photo(make_pair(model, angle=35.0, scale=0.33, user_size=(700, 700)).user, np.random.default_rng(3))
    phone = make_phone_photo(
        seed=4, orientation="portrait", aspect="4:3", megapixels=12.0, moon=model, circle=(1000.0, 1000.0, 920.0)
    )[0]
    pairs = []
    for name, user in (("crop 700 px PNG", encode(crop)), ("phone 12 Mpx JPEG", encode(phone, ".jpg", 92))):
        user_path, model_path = Path(folder) / f"{len(pairs)}-user", Path(folder) / f"{len(pairs)}-model"
        user_path.write_bytes(user)
        model_path.write_bytes(render)
        pairs.append((name, user_path, model_path))
    return pairs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithms", nargs="+", default=["ORB", "SIFT", "SURF"])
    parser.add_argument("--pairs", nargs="+", default=["demo", "generated"], choices=["demo", "generated"])
    parser.add_argument(
        "--compare", metavar="DIR", help="also measure the default variant of another checkout (e.g. a git worktree of an earlier commit)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        pairs = []
        if "demo" in args.pairs:
            if SHARED.exists():
                pairs += [(f"demo {i}", SHARED / f"{i}-userImage.png", SHARED / f"{i}-modelImage.png") for i in ("01", "02", "03")]
            else:
                print(f"demo pairs skipped: {SHARED} is absent")
        if "generated" in args.pairs:
            pairs += generated_pairs(folder)
        runs = [(variant, CHILD.format(root=str(ROOT))) for variant in VARIANTS]
        if args.compare:
            runs.append(("default", CHILD.format(root=str(Path(args.compare).resolve()))))
        names = [*VARIANTS, *(["compared"] if args.compare else [])]
        print(f"{'pair':20s} {'algorithm':9s} " + " ".join(f"{v + ' RSS':>16s} {v + ' traced':>19s}" for v in names))
        for name, user_path, model_path in pairs:
            for algorithm in args.algorithms:
                cells = []
                for variant, child in runs:
                    out = subprocess.run(
                        [sys.executable, "-c", child, variant, algorithm, str(user_path), str(model_path)],
                        capture_output=True, text=True, check=True,
                    ).stdout
                    row = json.loads(out.strip().splitlines()[-1])
                    cells.append(f"{row['rss_rise_mb']:13.1f} MB {row['traced_mb']:16.1f} MB")
                print(f"{name:20s} {algorithm:9s} " + " ".join(cells), flush=True)
    print(f"\nru_maxrss of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
