"""Accuracy and speed of the registration pipelines, side by side.

Builds a broad synthetic set with known homographies (see
:func:`moontrek.synthetic.make_benchmark_pairs`), runs every algorithm with
every pipeline on the same pairs, adds the real demo pairs of
``../shared/data/registrate`` when present, and prints one table.

Success, on synthetic and real pairs alike, is the rule of
``reference.json``: the mean distance between the user image's four corners
mapped by the answer and by the truth is at most 3% of the user image's
longer side.

Two median times per pair: "pipeline ms" for ``register_images`` on decoded
images, and "e2e ms" for ``register`` on the encoded files, decoding
included, which is what a request costs (the real pairs' own files; the
synthetic pairs encoded once as lossless PNG, as the demo files are).
OpenCV runs on one thread (``--threads``), as on a busy server.

    python benchmarks/bench_accuracy.py --pairs 60 --seed 0
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
from moontrek.synthetic import encode, make_benchmark_pairs  # noqa: E402

__all__ = ["make_parser", "main", "run_pairs"]

TOLERANCE = 0.03
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "registrate"


def make_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=60, help="synthetic pairs (default 60)")
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


def run_pairs(items, algorithm, pipeline, verbose=False, e2e=True):
    """Run ``items`` of (label, user, model, truth, (user bytes, model
    bytes)); return (errors as fractions of the user's longer side, inf on
    failure; pipeline-only times in ms; end-to-end times in ms, decoding
    included, empty unless ``e2e``)."""
    errors, times, e2e_times = [], [], []
    for label, user, model, truth, files in items:
        started = time.perf_counter()
        try:
            result = register_images(user, model, algorithm, pipeline=pipeline)
            height, width = user.shape[:2]
            error = corner_error(result.homography, truth, width, height) / max(width, height)
        except RegistrationError as exc:
            error, result = float("inf"), exc
        times.append((time.perf_counter() - started) * 1000.0)
        errors.append(error)
        if e2e:
            started = time.perf_counter()
            try:
                register(*files, algorithm, pipeline=pipeline)
            except RegistrationError:
                pass
            e2e_times.append((time.perf_counter() - started) * 1000.0)
        if verbose and not error <= TOLERANCE:
            shown = f"{error:.3f}" if np.isfinite(error) else type(result).__name__
            print(f"    {algorithm} {pipeline} {label}: {shown}")
    return errors, times, e2e_times


def _summary(errors, times):
    ok = sum(error <= TOLERANCE for error in errors)
    median = statistics.median(errors) if errors else float("nan")
    return ok, median, _median(times)


def _median(times):
    return statistics.median(times) if times else float("nan")


def _pct(value):
    return "failed" if not np.isfinite(value) else f"{100 * value:.2f}%"


def main(argv=None):
    args = make_parser().parse_args(argv)
    cv2.setNumThreads(args.threads)
    e2e = not args.no_e2e
    pipelines = args.pipelines.split(",") if args.pipelines else [p for p in ("moon", "classic") if p in PIPELINES]
    use_shared = not args.no_shared and (SHARED / "reference.json").exists()
    model_paths = list(args.model)
    if use_shared and not model_paths:
        model_paths = sorted(str(path) for path in SHARED.glob("*-modelImage.png"))

    started = time.perf_counter()
    pairs = build_pairs(args.pairs, args.seed, model_paths)
    encoded = {}
    synthetic = []
    for i, pair in enumerate(pairs):
        files = None
        if e2e:
            # Pairs share their model: encode each model once.
            key = id(pair.model)
            if key not in encoded:
                encoded[key] = encode(pair.model)
            files = (encode(pair.user), encoded[key])
        synthetic.append((f"#{i} {pair.params}", pair.user, pair.model, pair.expected, files))
    real = _real_pairs() if use_shared else []
    print(
        f"{len(synthetic)} synthetic pairs (seed {args.seed}, {len(model_paths)} given model images) "
        f"built in {time.perf_counter() - started:.1f} s; "
        f"{len(real)} real pairs{'' if real else ' (../shared/data not found)'}; "
        f"cv2.setNumThreads({args.threads})."
    )
    print(f"Success: corner error <= {100 * TOLERANCE:.0f}% of the user image's longer side.")
    print("Times: median ms per pair, pipeline only (register_images) and end to end (register, decoding included).\n")

    header = (
        f"{'algorithm':9} {'pipeline':8} | {'synthetic ok':>14} {'median err':>10} {'pipe ms':>8} {'e2e ms':>7}"
        f" | {'real ok':>7} {'real errors (% of side)':<34} {'pipe ms':>8} {'e2e ms':>7}"
    )
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
            errors, times, e2e_times = run_pairs(synthetic, name, pipeline, args.verbose, e2e)
            ok, median, ms = _summary(errors, times)
            rate = 100 * ok / max(1, len(errors))
            line = (
                f"{name:9} {pipeline:8} | {ok:>4}/{len(errors):<3} {rate:5.1f}% {_pct(median):>10}"
                f" {ms:8.1f} {_median(e2e_times):7.1f}"
            )
            if real:
                real_errors, real_times, real_e2e = run_pairs(real, name, pipeline, args.verbose, e2e)
                real_ok, _, real_ms = _summary(real_errors, real_times)
                shown = " ".join(f"{n}:{_pct(e)}" for (n, *_), e in zip(real, real_errors))
                line += f" | {real_ok:>3}/{len(real_errors):<3} {shown:<34} {real_ms:8.1f} {_median(real_e2e):7.1f}"
            print(line, flush=True)
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
