"""Accuracy and speed of the registration pipelines, side by side.

Five sets, every algorithm with every pipeline on the same pairs:

- ``synthetic``: a broad set with known homographies (see
  :func:`moontrek.synthetic.make_benchmark_pairs`); success as for the demo
  pairs below.
- ``photo-render``: photos against renders made from two lunar maps
  (``../shared/data/textures``, else maps generated in code), renders from
  one map and photos from the other and the other way round, librations up
  to 3 degrees apart, over-exposure, heavy blur, colour casts, occluders,
  client crops clipped at the frame's edge (see
  :func:`moontrek.synthetic.make_photo_render_set`). Success: the mean error
  over the photo's inner disk is at most 2% of the user image's longer side.
- ``phone``: whole phone photos (4:3 and 16:9, portrait and landscape, 2 to
  12 Mpx, the Moon 8-30% of the short side). Success: the mean error over
  the disk is at most 2% of the Moon's diameter.
- ``phase``: photo-against-render pairs as above at a phase of 90-140
  degrees (half Moons to crescents), the render lit by the same Sun as the
  photo, as the client's render for the photo's moment is; the crops are
  not clipped. Success as for photo-render.
- ``demo``: the real demo pairs of ``../shared/data/registrate`` when present.

Success, on synthetic and real pairs alike, is the rule of
``reference.json``: the mean distance between the user image's four corners
mapped by the answer and by the truth is at most 3% of the user image's
longer side.

Two median times per pair: "pipeline ms" for ``register_images`` on decoded
images, and "e2e ms" for ``register`` on the encoded files, decoding
included, which is what a request costs (the real pairs' own files; the
synthetic pairs encoded once as lossless PNG, as the demo files are).
OpenCV runs on one thread (``--threads``), as on a busy server.

    python benchmarks/bench_accuracy.py --pairs 60 --photo-render 40 --phone 20 --seed 0
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from moontrek.registration import (  # noqa: E402
    ALGORITHM_NAMES,
    AlgorithmUnavailableError,
    RegistrationError,
    corner_error,
    decode_image,
    get_algorithm,
    register,
    register_images,
)
from moontrek.registration.engine import PIPELINES  # noqa: E402
from moontrek.synthetic import (  # noqa: E402
    _model_render,
    disk_error,
    encode,
    make_benchmark_pairs,
    make_globe_phone_photo,
    make_lunar_maps,
    make_photo_render_pair,
    make_photo_render_set,
    to_rgba_render,
)

__all__ = ["make_parser", "main", "run_pairs"]

TOLERANCE = 0.03
DISK_TOLERANCE = 0.02
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "registrate"
TEXTURES = SHARED.parent / "textures"
SETS = ("synthetic", "photo-render", "phone", "phase", "demo")


def make_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=60, help="synthetic pairs (default 60)")
    parser.add_argument("--photo-render", type=int, default=40, help="photo-against-render pairs (default 40)")
    parser.add_argument("--phone", type=int, default=20, help="whole phone photos (default 20)")
    parser.add_argument("--phase", type=int, default=20, help="photo-render pairs at a phase of 90-140 (default 20)")
    parser.add_argument("--phone-max-mpx", type=float, default=12.0, help="largest phone photo, Mpx (default 12)")
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {', '.join(SETS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--algorithms", default=",".join(ALGORITHM_NAMES), help="comma-separated names")
    parser.add_argument("--pipelines", default=None, help="comma-separated (default: moon,classic)")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="PATH",
        help="a model render to make pairs from (repeatable); the real renders in ../shared are added when present",
    )
    parser.add_argument("--no-shared", action="store_true", help="ignore ../shared/data")
    parser.add_argument("--verbose", action="store_true", help="print every failure")
    parser.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads (default 1)")
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end timing (decoding included)")
    return parser


def _read(path):
    return decode_image(Path(path).read_bytes(), field=str(path))


def _real_pairs():
    """(name, user, model, truth, (user bytes, model bytes)) per real pair."""
    reference = json.loads((SHARED / "reference.json").read_text())
    pairs = []
    for name, entry in sorted(reference["pairs"].items()):
        files = ((SHARED / entry["user"]).read_bytes(), (SHARED / entry["model"]).read_bytes())
        user, model = (decode_image(data, field=field) for data, field in zip(files, ("user", "model")))
        pairs.append((name, user, model, np.array(entry["homography"]), files))
    return pairs


def build_pairs(count, seed, model_paths):
    """Synthetic pairs: two thirds from generated renders, one third from the
    given model images when there are any."""
    sources = [_read(path) for path in model_paths]
    given = count // 3 if sources else 0
    pairs = make_benchmark_pairs(count - given, seed)
    if given:
        pairs += make_benchmark_pairs(given, seed + 1, sources=sources)
    return pairs


def corner_scorer(truth, width, height):
    """The reference.json rule: corner error over the user's longer side."""
    return lambda homography: corner_error(homography, truth, width, height) / max(width, height)


def disk_scorer(pair, per):
    """Mean error over the photo's inner disk over ``per`` pixels."""
    frame = (pair.user.shape[1], pair.user.shape[0])
    return lambda homography: disk_error(homography, pair.expected, pair.user_circle, frame=frame) / per


def run_pairs(items, algorithm, pipeline, tolerance=TOLERANCE, verbose=False, e2e=True):
    """Run ``items`` of (label, user, model, score, (user bytes, model
    bytes)), ``score`` mapping an answer to its error as a fraction; return
    (errors, inf on failure; pipeline-only times in ms; end-to-end times in
    ms, decoding included, empty unless ``e2e``)."""
    errors, times, e2e_times = [], [], []
    for label, user, model, score, files in items:
        started = time.perf_counter()
        try:
            result = register_images(user, model, algorithm, pipeline=pipeline)
            error = score(result.homography)
        except RegistrationError as exc:
            error, result = float("inf"), exc
        times.append((time.perf_counter() - started) * 1000.0)
        errors.append(error)
        if e2e and files is not None:
            started = time.perf_counter()
            try:
                register(*files, algorithm, pipeline=pipeline)
            except RegistrationError:
                pass
            e2e_times.append((time.perf_counter() - started) * 1000.0)
        if verbose and not error <= tolerance:
            shown = f"{error:.3f}" if np.isfinite(error) else type(result).__name__
            print(f"    {algorithm} {pipeline} {label}: {shown}", flush=True)
    return errors, times, e2e_times


def _summary(errors, times, tolerance=TOLERANCE):
    ok = sum(error <= tolerance for error in errors)
    median = statistics.median(errors) if errors else float("nan")
    return ok, median, _median(times)


def _median(times):
    return statistics.median(times) if times else float("nan")


def _pct(value):
    return "failed" if not np.isfinite(value) else f"{100 * value:.2f}%"


def lunar_maps(generated_size=(1440, 720)):
    """(map A, map B, where from): the shared textures, else generated ones
    of ``generated_size``."""
    if (TEXTURES / "moon-2k.jpg").exists() and (TEXTURES / "ldam_10.png").exists():
        maps = [cv2.imread(str(TEXTURES / name), cv2.IMREAD_COLOR) for name in ("moon-2k.jpg", "ldam_10.png")]
        return maps, "moon-2k.jpg and ldam_10.png"
    return list(make_lunar_maps(0, generated_size)), "maps generated in code (../shared textures absent)"


def photo_render_items(count, seed, maps, e2e):
    pairs = make_photo_render_set(maps, count, seed)
    encoded = {}
    items = []
    for i, pair in enumerate(pairs):
        files = None
        if e2e:
            key = id(pair.model)
            if key not in encoded:
                encoded[key] = encode(to_rgba_render(pair.model))
            files = (encode(pair.user), encoded[key])
        p = pair.params
        label = (
            f"#{i} dir {p['direction']} r {p['radius']:.0f} exp {p['exposure']:.2f} blur {p['blur']:.1f}"
            f" clipped {p['clipped']} branches {p['branches']} plane {p['plane']}"
        )
        items.append((label, pair.user, pair.model, disk_scorer(pair, max(pair.user.shape[:2])), files))
    return items


def phase_items(count, seed, maps, e2e):
    """Photo-against-render pairs at a common phase, 90-140 degrees (half
    Moons to crescents): the render made for the photo's moment, lit by the
    same Sun; one render per pair (the phase differs), no crop clipped."""
    items = []
    for i in range(count):
        d = i % 2
        rng = np.random.default_rng([seed, i, 11])
        phase = float(rng.uniform(90, 140))
        pair = make_photo_render_pair(maps[d], maps[1 - d], [seed, i, 12], phase=phase, clipped=False)
        files = (encode(pair.user), encode(to_rgba_render(pair.model))) if e2e else None
        p = pair.params
        label = f"#{i} dir {d} phase {phase:.0f} r {p['radius']:.0f} exp {p['exposure']:.2f} blur {p['blur']:.1f}"
        items.append((label, pair.user, pair.model, disk_scorer(pair, max(pair.user.shape[:2])), files))
    return items


def phone_items(count, seed, maps, max_mpx, e2e):
    """Whole phone photos: both map directions, portrait and landscape, 4:3
    and 16:9 in turn, 2 Mpx to ``max_mpx``."""
    models = [_model_render(maps[d], np.random.default_rng([seed, d, 7])) for d in (0, 1)]
    items = []
    for i in range(count):
        d = i % 2
        rng = np.random.default_rng([seed, i, 3])
        options = {
            "aspect": ("4:3", "16:9")[(i // 2) % 2],
            "orientation": ("landscape", "portrait")[(i // 4) % 2],
            "megapixels": float(np.exp(rng.uniform(np.log(2.0), np.log(max_mpx)))),
        }
        pair = make_globe_phone_photo(maps[1 - d], models[d], [seed, i, 5], **options)
        files = (encode(pair.user, ".jpg", 92), encode(to_rgba_render(pair.model))) if e2e else None
        width, height = pair.params["size"]
        label = f"#{i} dir {d} {width}x{height} moon r {pair.user_circle[2]:.0f} phase {pair.params.get('phase', 0):.0f}"
        items.append((label, pair.user, pair.model, disk_scorer(pair, 2 * pair.model_circle[2]), files))
    return items


def main(argv=None):
    args = make_parser().parse_args(argv)
    cv2.setNumThreads(args.threads)
    e2e = not args.no_e2e
    pipelines = args.pipelines.split(",") if args.pipelines else [p for p in ("moon", "classic") if p in PIPELINES]
    wanted = [name.strip() for name in args.sets.split(",") if name.strip()]
    use_shared = not args.no_shared and (SHARED / "reference.json").exists()
    model_paths = list(args.model)
    if use_shared and not model_paths:
        model_paths = sorted(str(path) for path in SHARED.glob("*-modelImage.png"))

    started = time.perf_counter()
    sets = {}
    if "synthetic" in wanted and args.pairs:
        items = []
        encoded = {}
        for i, pair in enumerate(build_pairs(args.pairs, args.seed, model_paths)):
            files = None
            if e2e:
                # Pairs share their model: encode each model once.
                key = id(pair.model)
                if key not in encoded:
                    encoded[key] = encode(pair.model)
                files = (encode(pair.user), encoded[key])
            height, width = pair.user.shape[:2]
            items.append((f"#{i} {pair.params}", pair.user, pair.model, corner_scorer(pair.expected, width, height), files))
        sets["synthetic"] = (items, TOLERANCE)
    if (
        ("photo-render" in wanted and args.photo_render)
        or ("phone" in wanted and args.phone)
        or ("phase" in wanted and args.phase)
    ):
        maps, where = lunar_maps() if not args.no_shared else (list(make_lunar_maps(0, (1440, 720))), "generated maps")
        print(f"Lunar maps: {where}.")
        if "photo-render" in wanted and args.photo_render:
            sets["photo-render"] = (photo_render_items(args.photo_render, args.seed, maps, e2e), DISK_TOLERANCE)
        if "phone" in wanted and args.phone:
            sets["phone"] = (phone_items(args.phone, args.seed, maps, args.phone_max_mpx, e2e), DISK_TOLERANCE)
        if "phase" in wanted and args.phase:
            sets["phase"] = (phase_items(args.phase, args.seed, maps, e2e), DISK_TOLERANCE)
    if "demo" in wanted and use_shared:
        real = []
        for name, user, model, truth, files in _real_pairs():
            height, width = user.shape[:2]
            real.append((name, user, model, corner_scorer(truth, width, height), files if e2e else None))
        sets["demo"] = (real, TOLERANCE)
    print(
        f"Sets built in {time.perf_counter() - started:.1f} s (seed {args.seed}): "
        + ", ".join(f"{name} {len(items)}" for name, (items, _) in sets.items())
        + f"; cv2.setNumThreads({args.threads})."
    )
    print(
        "Success: synthetic and demo, corner error <= 3% of the user image's longer side; photo-render and"
        " phase, mean disk error <= 2% of the user image's longer side; phone, mean disk error <= 2% of the"
        " Moon's diameter."
    )
    print("Cells: ok/n, median error, median ms per pair (pipeline only; e2e = register() on the files).\n")

    names = list(sets)
    header = f"{'algorithm':9} {'pipeline':8}" + "".join(f" | {name:^30}" for name in names)
    print(header)
    print("-" * len(header))
    notes = []
    for name in [n.strip().upper() for n in args.algorithms.split(",") if n.strip()]:
        try:
            get_algorithm(name)
        except AlgorithmUnavailableError as exc:
            notes.append(f"{name} skipped: {exc.message}")
            continue
        for pipeline in pipelines:
            line = f"{name:9} {pipeline:8}"
            for set_name in names:
                items, tolerance = sets[set_name]
                errors, times, e2e_times = run_pairs(items, name, pipeline, tolerance, args.verbose, e2e)
                ok, median, ms = _summary(errors, times, tolerance)
                cell = f"{ok:>3}/{len(errors):<3} {_pct(median):>7} {ms:6.0f}"
                if e2e_times:
                    cell += f" e2e {_median(e2e_times):5.0f}"
                line += f" | {cell:<30}"
            print(line, flush=True)
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
