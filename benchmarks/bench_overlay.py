"""Time and memory of the overlay on a phone-sized photo: each view, and the
overlay with 0 to 8 layers of 2000x2000 RGBA, each case in a fresh process
(so its peak resident memory is its own).

    python benchmarks/bench_overlay.py [--width 3024 --height 4032] [--layers 0 1 8] [--algorithm SIFT]

Prints registration and drawing (including PNG encoding) milliseconds and the
rise in peak resident memory over the process's state before the request.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def one_case(width, height, layers, view, algorithm):
    import cv2
    import numpy as np

    from moontrek.registrar import Registrar
    from moontrek.synthetic import encode, make_pair, render_moon

    model = render_moon(2000, seed=1)
    pair = make_pair(model, angle=30.0, scale=0.55 * min(width, height) / 1000, user_size=(width, height))
    user_bytes, model_bytes = encode(pair.user, ".jpg", 90), encode(model)
    layer = np.zeros((2000, 2000, 4), np.uint8)
    cv2.circle(layer, (1000, 1000), 700, (0, 0, 255, 255), 10)
    cv2.line(layer, (200, 1000), (1800, 1000), (0, 255, 255, 255), 8)
    layer_bytes = [encode(layer)] * layers
    del pair
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result, image, drawing_ms = Registrar().overlay(user_bytes, model_bytes, layer_bytes, algorithm, view=view)
    total_ms = (time.perf_counter() - started) * 1000.0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"view": view, "layers": layers, "register_ms": round(result.elapsed_ms), "drawing_ms": round(drawing_ms),
            "total_ms": round(total_ms), "peak_rise_mb": round((after - before) / 1024), "bytes": len(image)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=3024)
    parser.add_argument("--height", type=int, default=4032)
    parser.add_argument("--layers", type=int, nargs="+", default=[0, 1, 8])
    parser.add_argument("--algorithm", default="SIFT")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(one_case(args.width, args.height, *json.loads(args.case), args.algorithm)))
        return
    cases = [(n, "overlay") for n in args.layers] + [(0, "matches"), (0, "blend")]
    print(f"{args.width}x{args.height} photo, {args.algorithm}")
    print(f"{'view':8s} {'layers':>6s} {'register ms':>12s} {'drawing ms':>11s} {'peak rise MB':>13s} {'out MB':>7s}")
    for layers, view in cases:
        output = subprocess.run(
            [sys.executable, __file__, "--width", str(args.width), "--height", str(args.height),
             "--algorithm", args.algorithm, "--case", json.dumps([layers, view])],
            check=True, capture_output=True, text=True,
        ).stdout
        row = json.loads(output.strip().splitlines()[-1])
        print(f"{view:8s} {layers:6d} {row['register_ms']:12d} {row['drawing_ms']:11d} {row['peak_rise_mb']:13d} "
              f"{row['bytes'] / 1e6:7.1f}", flush=True)


if __name__ == "__main__":
    main()
