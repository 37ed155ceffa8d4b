"""Registration of the second generator's whole phone photos.

    python benchmarks/bench_register_second.py [--seed 50000] [--count 50] [--algorithms SIFT,ORB] [--verbose]

The Moon scenes of ``bench_detect_second.py`` (its even seeds from
``--seed``: night, city, twilight and day skies, planets, lamps, trees,
roofs, cloud, blooms and tints, phases up to 140 degrees, a fifth of the
Moons cut by the frame) registered over ``register()`` (the photo as a
JPEG, the render as the client's RGBA PNG) against a render of the other
lunar map at a libration up to 3 degrees off the photo's, lit by the same
Sun (the render made for the photo's moment). The truth is fitted to the
sphere's correspondences over the inner disk (``globe_truth``); success is
a mean error over the disk within 2% of the Moon's diameter, both in the
frame the homography maps into (the render fitted to the photo, where the
Moon is several times larger than in the photo). Prints, per
algorithm, successes, refusals and wrong answers for whole Moons and for
Moons cut by the frame.
"""

import argparse
import collections
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_detect_second as second  # noqa: E402
from bench_accuracy import lunar_maps  # noqa: E402

from moontrek.registration import ALGORITHM_NAMES, RegistrationError, register  # noqa: E402
from moontrek.registration.geometry import fitted_size  # noqa: E402
from moontrek.synthetic import GlobeView, _same_sun, disk_error, encode, globe_truth, render_globe, to_rgba_render  # noqa: E402

TOLERANCE = 0.02


def scenes(seed, count, maps):
    """(seed, label, photo, truth circle, photo's view, the photo's map index, its Sun) per Moon scene."""
    seen = {}
    real_render = second.render_globe

    def capture(lunar_map, size, view, **options):
        seen.update(map=next(i for i, m in enumerate(maps) if m is lunar_map), view=view, sun=options.get("sun"))
        return real_render(lunar_map, size, view, **options)

    second.MAPS = maps
    second.render_globe = capture
    try:
        for s in range(seed + seed % 2, seed + seed % 2 + 2 * count, 2):
            seen.clear()
            image, truth, label = second.scene(s, True, second.KINDS[(s // 2) % len(second.KINDS)])
            x, y, r = (float(v) for v in truth)
            yield s, label, image, (x, y, r), seen["view"].moved(x=x, y=y), seen["map"], seen["sun"]
    finally:
        second.render_globe = real_render


def model_for(seed, maps, photo_map, view, sun):
    """The client's render for the photo: the other map, a libration up to
    3 degrees off, any roll, lit by the photo's Sun; (image, view)."""
    rng = np.random.default_rng([seed, 99])
    offset, direction = 3.0 * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
    model_view = GlobeView(
        view.lon + offset * np.cos(direction), view.lat + offset * np.sin(direction), rng.uniform(0, 360),
        1000.0, 1000.0, 2000 * rng.uniform(0.43, 0.495),
    )
    model_sun = _same_sun(view, sun, model_view)
    image, _ = render_globe(maps[1 - photo_map], (2000, 2000), model_view, sun=model_sun, shading="lambert")
    return (np.clip(image * rng.uniform(0.7, 1.0), 0, 1) * 255 + 0.5).astype(np.uint8), model_view


def request_for(seed, maps, image, view, photo_map, sun):
    """What a client sends for the photo ``image`` of scene ``seed``, and
    how it is scored: (photo JPEG bytes, render RGBA PNG bytes, the true
    homography into the fitted render, the Moon's diameter there)."""
    height, width = image.shape[:2]
    model, model_view = model_for(seed, maps, photo_map, view, sun)
    expected, _ = globe_truth(view, model_view, (2000, 2000), (width, height))
    # The errors are in the fitted render's pixels: over its Moon's diameter.
    diameter = 2 * model_view.radius * fitted_size(2000, 2000, width, height)[0] / 2000
    photo = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
    return photo, encode(to_rgba_render(model)), expected, diameter


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=50000)
    parser.add_argument("--count", type=int, default=50, help="Moon scenes (default 50)")
    parser.add_argument("--algorithms", default=",".join(ALGORITHM_NAMES))
    parser.add_argument("--verbose", action="store_true", help="list every failure")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    algorithms = [a.strip().upper() for a in args.algorithms.split(",") if a.strip()]
    maps, where = lunar_maps()
    print(f"Lunar maps: {where}; scenes of seeds {args.seed}-{args.seed + 2 * args.count - 1} with a Moon.")
    tally = collections.Counter()
    for s, label, image, (x, y, r), view, photo_map, sun in scenes(args.seed, args.count, maps):
        height, width = image.shape[:2]
        kind = "whole" if r <= x <= width - r and r <= y <= height - r else "cut"
        *files, expected, diameter = request_for(s, maps, image, view, photo_map, sun)
        for algorithm in algorithms:
            tally[algorithm, kind, "n"] += 1
            try:
                result = register(*files, algorithm)
            except RegistrationError as error:
                tally[algorithm, kind, "refused"] += 1
                outcome = type(error).__name__
            else:
                e = disk_error(result.homography, expected, (x, y, r), frame=(width, height)) / diameter
                outcome = "ok" if e <= TOLERANCE else f"wrong {e:.1%}"
                tally[algorithm, kind, "ok" if e <= TOLERANCE else "wrong"] += 1
            if args.verbose and outcome != "ok":
                print(f"  {algorithm} {s} {label} {width}x{height} r {r:.0f} phase {sun[0]:.0f} {kind}: {outcome}", flush=True)
    print(f"\n{'algorithm':9} | {'whole: ok / refused / wrong':28} | {'cut by the frame: ok / refused / wrong':38}")
    for algorithm in algorithms:
        cells = []
        for kind in ("whole", "cut"):
            n = tally[algorithm, kind, "n"]
            cells.append(f"{tally[algorithm, kind, 'ok']}/{n} / {tally[algorithm, kind, 'refused']} / {tally[algorithm, kind, 'wrong']}")
        print(f"{algorithm:9} | {cells[0]:28} | {cells[1]:38}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
