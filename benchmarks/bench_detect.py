"""Measure Moon-disk detection: the real photos in ../shared (when present),
a few hundred generated scenes, and whole phone photos (2-12 Mpx), with and
without a Moon.

    python benchmarks/bench_detect.py [--scenes N] [--photos N] [--seed S] [--cache DIR]
    python benchmarks/bench_detect.py --only clipped [--clipped N] [--clipped-seed S]

Each set is scored for find_moon, for what POST /api/moon/detect answers
(find_moon's circle fitted to the lit limb, find_moon_on_limb) and for the
moon pipeline's disk (_find_moon_fast on a pyramid, fitted alike).

A detection is correct when its centre is within max(5 px, 0.3 r) of the
truth and its radius within 30% (the rule of shared/data/detect/circles.json).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moontrek.registration.errors import NoMoonError  # noqa: E402
from moontrek.registration.images import decode_image  # noqa: E402
from moontrek.registration.moon import find_moon  # noqa: E402
from moontrek.registration.moon_pipeline import _find_moon_fast, _on_limb, _Pyramid, find_moon_on_limb  # noqa: E402
from moontrek.synthetic import (  # noqa: E402
    PHONE_NO_MOON_KINDS,
    make_clipped_moon_photo,
    make_no_moon_photo,
    make_no_moon_scene,
    make_phone_photo,
    make_sky_scene,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NO_MOON_KINDS = ("blank", "noise", "gradient", "coins", "lamps")
SKIES = {
    "night": (40, 18, 8),
    "dusk": (70, 45, 40),
    "twilight": (40, 70, 140),
    "haze": (150, 140, 150),
    "blue": (160, 90, 30),
    "black": (0, 0, 0),
}
TINTS = {"white": (1.0, 1.0, 1.0), "orange": (0.45, 0.75, 1.0), "pink": (0.8, 0.75, 1.0), "blue": (1.0, 0.9, 0.8)}


def within(found, truth):
    x, y, r = truth
    return bool(np.hypot(found.x - x, found.y - y) <= max(5.0, 0.3 * r) and abs(found.radius - r) <= 0.3 * r)


def random_scene(seed):
    """A generated Moon scene with its parameters drawn at random."""
    rng = np.random.default_rng(seed)
    width, height = [(640, 480), (800, 600), (1024, 768), (1280, 960), (600, 800)][int(rng.integers(5))]
    short = min(width, height)
    radius = float(np.exp(rng.uniform(np.log(10), np.log(min(400, 0.45 * short)))))
    sky_name = list(SKIES)[int(rng.integers(len(SKIES)))]
    if rng.random() < 0.15:
        # Touching or cut by the frame, centre still inside.
        side = int(rng.integers(4))
        inset = rng.uniform(0.3, 1.0) * radius
        cx = [inset, width - inset, rng.uniform(radius, width - radius), rng.uniform(radius, width - radius)][side]
        cy = [rng.uniform(radius, height - radius), rng.uniform(radius, height - radius), inset, height - inset][side]
        centre = (cx, cy)
    else:
        centre = None
    phase = None
    if rng.random() < 0.3:
        angle = rng.uniform(0, 2 * np.pi)
        shift = rng.uniform(0.7, 1.8)
        phase = (shift * np.cos(angle), shift * np.sin(angle))
    tint = TINTS[list(TINTS)[int(rng.integers(len(TINTS)))]]
    gradient = float(rng.uniform(0, 0.8))
    # In a photo the Moon outshines the sky around it; keep it so, with a
    # margin, by dimming the sky.
    luma = np.array([0.114, 0.587, 0.299])
    sky = np.array(SKIES[sky_name], float)
    sky_luma = float(luma @ sky) * (1 + gradient)
    moon_luma = 0.7 * 255 * float(luma @ np.array(tint))
    if sky_luma > moon_luma / 1.4:
        sky *= moon_luma / 1.4 / sky_luma
    params = dict(
        size=(width, height),
        seed=int(seed),
        radius=radius,
        centre=centre,
        sky=tuple(sky),
        gradient=gradient,
        tint=tint,
        halo=float(rng.uniform(0.3, 1.2)) if rng.random() < 0.3 else 0.0,
        phase=phase,
        branches=int(rng.integers(1, 5)) if rng.random() < 0.2 else 0,
        noise=float(rng.uniform(0, 10)),
        jpeg=int(rng.integers(50, 95)) if rng.random() < 0.5 else None,
    )
    image, truth = make_sky_scene(**params)
    features = [sky_name]
    if centre is not None:
        features.append("border")
    if phase is not None:
        features.append("crescent")
    if params["halo"]:
        features.append("halo")
    if params["branches"]:
        features.append("branches")
    if radius < 20:
        features.append("small")
    return image, truth, features


def pipeline_disk(image):
    """The photo's disk as the moon pipeline takes it: its search on a
    pyramid, then fitted to the lit limb where that settles it."""
    pyramid = _Pyramid(image)
    side = _on_limb(pyramid, _find_moon_fast(pyramid))
    return side.circle


# find_moon is the detector; /api/moon/detect answers its circle fitted to
# the lit limb (find_moon_on_limb), as the pipeline does with its own search.
DETECTORS = {"find_moon": find_moon, "endpoint": find_moon_on_limb, "pipeline": pipeline_disk}


def run(image, detector=find_moon):
    start = time.perf_counter()
    try:
        found = detector(image)
    except NoMoonError:
        found = None
    return found, (time.perf_counter() - start) * 1000.0


class Tally:
    def __init__(self, name):
        self.name = name
        self.total = self.correct = 0
        self.centre_errors, self.radius_errors, self.ms = [], [], []

    def add(self, found, truth, ms):
        self.total += 1
        self.ms.append(ms)
        if truth is None:
            self.correct += found is None
            return
        if found is not None:
            self.centre_errors.append(float(np.hypot(found.x - truth[0], found.y - truth[1])))
            self.radius_errors.append(abs(found.radius - truth[2]) / truth[2])
            self.correct += within(found, truth)

    def row(self):
        med = lambda values: f"{statistics.median(values):.2f}" if values else "-"  # noqa: E731
        rate = 100.0 * self.correct / self.total if self.total else 0.0
        return (
            f"| {self.name:<22} | {self.total:>5} | {rate:>6.1f}% | {med(self.centre_errors):>10} | "
            f"{med([100 * e for e in self.radius_errors]):>10} | {med(self.ms):>7} |"
        )


HEADER = (
    "| set                    | count | correct | centre px  | radius %   | ms      |\n"
    "|------------------------|-------|---------|------------|------------|---------|"
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=300, help="generated Moon scenes (default 300)")
    parser.add_argument("--seed", type=int, default=1000, help="first seed of the generated scenes")
    parser.add_argument("--photos", type=int, default=120, help="generated whole phone photos (default 120)")
    parser.add_argument("--fp-per-kind", type=int, default=8, help="Moon-less phone photos per kind (default 8)")
    parser.add_argument("--cache", type=Path, help="keep generated phone photos here (they take seconds to make)")
    parser.add_argument("--clipped", type=int, default=60, help="gibbous Moons cut by the frame (default 60)")
    parser.add_argument("--clipped-seed", type=int, default=0, help="first seed of those (default 0)")
    parser.add_argument(
        "--only", choices=["real", "scenes", "phone", "clipped", "timing"], action="append", help="run only these parts"
    )
    parser.add_argument("--verbose", action="store_true", help="list every failure")
    args = parser.parse_args()
    parts = set(args.only or ["real", "scenes", "phone", "clipped", "timing"])

    find_moon(make_sky_scene(seed=0)[0])  # warm up OpenCV's first-call costs
    print(HEADER)

    labels = SHARED / "detect" / "circles.json"
    if "real" not in parts:
        pass
    elif labels.exists():
        real_moon, real_none = Tally("real photos: Moon"), Tally("real photos: no Moon")
        for name, truth in sorted(json.loads(labels.read_text())["circles"].items()):
            image = decode_image((SHARED / "detect" / name).read_bytes(), field=name)
            found, ms = run(image)
            (real_moon if truth else real_none).add(found, truth, ms)
            wrong = (found is not None) if truth is None else (found is None or not within(found, truth))
            if args.verbose and wrong:
                print(f"  miss {name}: truth {truth}, found {found and found.as_dict()}")
        print(real_moon.row())
        print(real_none.row())
    else:
        print(f"(no real photos: {labels} is not here; skipped)")

    if "scenes" in parts:
        scenes(args)
    if "phone" in parts:
        phone_photos(args)
    if "clipped" in parts:
        clipped_moons(args)
    if "timing" in parts:
        timing()


def scenes(args):
    overall = Tally("generated: Moon")
    by_feature = {}
    for seed in range(args.seed, args.seed + args.scenes):
        image, truth, features = random_scene(seed)
        found, ms = run(image)
        overall.add(found, truth, ms)
        for feature in features:
            by_feature.setdefault(feature, Tally(f"  {feature}")).add(found, truth, ms)
        if args.verbose and (found is None or not within(found, truth)):
            print(f"  miss seed {seed} {features}: truth {tuple(round(v, 1) for v in truth)}, found {found and found.as_dict()}")
    print(overall.row())
    for name in sorted(by_feature):
        print(by_feature[name].row())

    no_moon = Tally("generated: no Moon")
    kinds = {}
    per_kind = max(1, args.scenes // 3 // len(NO_MOON_KINDS))
    for i, kind in enumerate(NO_MOON_KINDS):
        for j in range(per_kind):
            seed = args.seed + 100000 + 1000 * i + j
            jpeg = 80 if j % 2 else None
            image = make_no_moon_scene(kind, size=(800, 600), seed=seed, jpeg=jpeg)
            found, ms = run(image)
            no_moon.add(found, None, ms)
            kinds.setdefault(kind, Tally(f"  {kind}")).add(found, None, ms)
            if args.verbose and found is not None:
                print(f"  false Moon in {kind} seed {seed}: {found.as_dict()}")
    print(no_moon.row())
    for name in NO_MOON_KINDS:
        print(kinds[name].row())
    print(f"\nfalse-positive rate on generated no-Moon scenes: {100.0 * (1 - no_moon.correct / no_moon.total):.1f}%")



def cached(cache, name, make):
    """``make()``'s (image, truth) pair, kept in ``cache`` when one is given."""
    if cache is None:
        return make()
    path = cache / f"{name}.npz"
    if path.exists():
        data = np.load(path, allow_pickle=False)
        truth = tuple(float(v) for v in data["truth"]) if data["truth"].size else None
        return data["image"], truth, json.loads(str(data["info"]))
    image, truth, info = make()
    cache.mkdir(parents=True, exist_ok=True)
    plain = {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool, tuple, list))}
    np.savez(path, image=image, truth=np.array(truth if truth else [], float), info=json.dumps(plain))
    return image, truth, plain


def phone_features(info):
    """The labels a phone photo is tallied under."""
    features = [info["orientation"], f"{info['aspect']}", f"{mpx_bucket(info['megapixels'])} Mpx"]
    if info["phase"] >= 90:
        features.append("crescent")
    elif info["phase"] > 30:
        features.append("gibbous")
    if info["fraction"] < 0.12:
        features.append("small (<12%)")
    if info["clipped"]:
        features.append("edge-clipped")
    if info["halo"]:
        features.append("halo")
    if info["cloud"]:
        features.append("cloud")
    if info["exposure"] > 1.3:
        features.append("over-exposed")
    features.extend(info["distractors"])
    return features


def mpx_bucket(megapixels):
    return "2-4" if megapixels < 4 else "4-8" if megapixels < 8 else "8-12"


def phone_photos(args):
    """Whole phone photos with a Moon (success by feature and size) and
    without one (false positives by kind), for both detectors."""
    moon_tallies = {name: {} for name in DETECTORS}
    for seed in range(args.seed, args.seed + args.photos):
        image, truth, info = cached(args.cache, f"phone-{seed}", lambda: make_phone_photo(seed))
        features = ["phone: Moon"] + [f"  {f}" for f in phone_features(info)]
        for name, detector in DETECTORS.items():
            found, ms = run(image, detector)
            for feature in features:
                moon_tallies[name].setdefault(feature, Tally(feature)).add(found, truth, ms)
            if args.verbose and (found is None or not within(found, truth)):
                print(
                    f"  {name} miss phone {seed} {phone_features(info)} {image.shape[1]}x{image.shape[0]}: "
                    f"truth {tuple(round(v, 1) for v in truth)}, found {found and found.as_dict()}"
                )
    none_tallies = {name: {} for name in DETECTORS}
    for i, kind in enumerate(PHONE_NO_MOON_KINDS):
        for j in range(args.fp_per_kind):
            seed = args.seed + 200000 + 1000 * i + j

            def make():
                image, info = make_no_moon_photo(kind, seed)
                return image, None, info

            image, _, info = cached(args.cache, f"none-{kind}-{seed}", make)
            for name, detector in DETECTORS.items():
                found, ms = run(image, detector)
                for label in ("phone: no Moon", f"  {kind}"):
                    none_tallies[name].setdefault(label, Tally(label)).add(found, None, ms)
                if args.verbose and found is not None:
                    print(f"  {name} false Moon in phone {kind} seed {seed}: {found.as_dict()}")
    for name in DETECTORS:
        print(f"\n{name} on whole phone photos")
        print(HEADER)
        tallies = moon_tallies[name]
        print(tallies["phone: Moon"].row())
        for label in sorted(k for k in tallies if k != "phone: Moon"):
            print(tallies[label].row())
        tallies = none_tallies[name]
        print(tallies["phone: no Moon"].row())
        for kind in PHONE_NO_MOON_KINDS:
            print(tallies[f"  {kind}"].row())


def clipped_moons(args):
    """Gibbous Moons cut by the frame among lamps, planets, stars and
    silhouettes: the lit limb partly outside the frame, for every detector."""
    tallies = {name: Tally(f"clipped, {name}") for name in DETECTORS}
    for seed in range(args.clipped_seed, args.clipped_seed + args.clipped):
        image, truth, info = make_clipped_moon_photo(seed)
        for name, detector in DETECTORS.items():
            found, ms = run(image, detector)
            tallies[name].add(found, truth, ms)
            if args.verbose and (found is None or not within(found, truth)):
                print(f"  {name} miss clipped {seed} {info['distractors']}: truth {tuple(round(v, 1) for v in truth)}, "
                      f"found {found and found.as_dict()}")
    print()
    print(HEADER)
    for name in DETECTORS:
        print(tallies[name].row())


def timing():
    big, _ = make_sky_scene(size=(4000, 3000), radius=300, seed=7)
    one, _ = make_sky_scene(size=(1200, 850), radius=90, seed=7)
    phone = {mpx: make_phone_photo(3, megapixels=mpx, fraction=0.1, distractors=("planet", "lamps", "trees"))[0] for mpx in (2, 12)}
    print()
    for label, image in (("1 Mpx scene", one), ("12 Mpx scene", big), ("2 Mpx phone", phone[2]), ("12 Mpx phone", phone[12])):
        for name, detector in DETECTORS.items():
            times = [run(image, detector)[1] for _ in range(5)]
            print(f"median time, {name}, {label}: {statistics.median(times):.1f} ms")


if __name__ == "__main__":
    main()
