"""Moon detection on scenes from a second generator, written apart from
moontrek.synthetic and in another style, to see how far the detection rules
carry beyond the scenes they were written on.

    python benchmarks/bench_detect_second.py [--seed 0] [--count 200] [--cache DIR] [--verbose]

The Moon is rendered from the lunar maps in ../shared/data/textures (the
generated maps of moontrek.synthetic when they are absent: blander Moons)
with Lommel-Seeliger shading, its light added to the sky (a day Moon's unlit
part is the sky's colour). Skies: night, city glow, twilight, day. Scenes
alternate Moon / no Moon, each of a kind: a planet (diffraction spikes
sometimes), street lamps (round, elliptic or rectangular heads, bloom, posts
as dark as the sky), lamps with no post, trees, roofs with lit windows, the
Sun (Moon-less only), stars, car headlights, thin cloud, or a mix. 1.5 to 12
Mpx, 4:3, 3:2 or 16:9, portrait or landscape; a fifth of the Moons cut by
the frame; blur, noise, JPEG.

Scored as bench_detect.py scores (centre within max(5 px, 0.3 r), radius
within 30%), for find_moon, the /api/moon/detect answer and the pipeline.
"""

import argparse
import collections
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_accuracy import lunar_maps  # noqa: E402
from bench_detect import DETECTORS, HEADER, Tally, run, within  # noqa: E402

from moontrek.synthetic import GlobeView, render_globe  # noqa: E402


MAPS = None



def size_of(rng):
    mpx = float(np.exp(rng.uniform(np.log(1.5), np.log(12.0))))
    aspect = [4 / 3, 16 / 9, 3 / 2][int(rng.integers(3))]
    h = int(np.sqrt(mpx * 1e6 / aspect)); w = int(h * aspect)
    if rng.random() < 0.5:
        w, h = h, w
    return w, h


def sky(rng, w, h, kind):
    ys = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    if kind == "night":
        top = rng.uniform(0, 18, 3); bottom = top + rng.uniform(0, 25, 3)
    elif kind == "city":
        top = np.array([rng.uniform(10, 30), rng.uniform(15, 35), rng.uniform(25, 50)])
        bottom = np.array([rng.uniform(40, 70), rng.uniform(60, 100), rng.uniform(90, 140)])
    elif kind == "twilight":
        top = np.array([rng.uniform(70, 130), rng.uniform(40, 90), rng.uniform(20, 60)])
        bottom = np.array([rng.uniform(60, 120), rng.uniform(110, 170), rng.uniform(170, 230)])
    else:  # day
        top = np.array([rng.uniform(170, 230), rng.uniform(120, 170), rng.uniform(60, 110)])
        bottom = np.array([rng.uniform(200, 240), rng.uniform(180, 220), rng.uniform(150, 200)])
    img = top[None, None, :] * (1 - ys) + bottom[None, None, :] * ys
    return np.repeat(img, w, axis=1).astype(np.float32)


def bloom(img, light, sigma, gain):
    """Add a blurred copy of ``light`` (float HxWx3) to img (blurred at a
    reduced scale when wide)."""
    small = 1
    while sigma / small > 12 and small < 16:
        small *= 2
    if small > 1:
        h, w = light.shape[:2]
        l = cv2.resize(light, (max(1, w // small), max(1, h // small)), interpolation=cv2.INTER_AREA)
        l = cv2.GaussianBlur(l, (0, 0), sigma / small)
        l = cv2.resize(l, (w, h), interpolation=cv2.INTER_LINEAR)
    else:
        l = cv2.GaussianBlur(light, (0, 0), sigma)
    img += gain * l


def add_moon(img, rng, w, h, clipped=False):
    short = min(w, h)
    r = float(rng.uniform(0.04, 0.15) * short)
    if clipped:
        side = int(rng.integers(3)); inset = rng.uniform(0.35, 0.9) * r
        x = rng.uniform(r, w - r); y = rng.uniform(r, h * 0.7)
        if side == 0: x = inset
        elif side == 1: x = w - inset
        else: y = inset  # the top: the bottom has the silhouettes
    else:
        x = rng.uniform(1.2 * r, w - 1.2 * r); y = rng.uniform(1.2 * r, h * 0.75)
    view = GlobeView(rng.uniform(-6, 6), rng.uniform(-6, 6), rng.uniform(0, 360), 0, 0, r)
    pad = int(r * 1.1) + 4
    cw = ch = 2 * pad
    v = view.moved(x=pad + (x - int(x)), y=pad + (y - int(y)))
    phase = float(rng.choice([rng.uniform(0, 30), rng.uniform(30, 90), rng.uniform(90, 140)]))
    moon, _ = render_globe(MAPS[int(rng.integers(2))], (cw, ch), v, sun=(phase, rng.uniform(0, 360)), shading="lommel")
    gain = rng.uniform(180, 420)
    tint = np.array([rng.uniform(0.75, 1.0), rng.uniform(0.85, 1.0), 1.0]) if rng.random() < 0.4 else np.ones(3)
    light = moon * gain * tint[None, None, :].astype(np.float32)
    x0, y0 = int(x) - pad, int(y) - pad
    full = np.zeros_like(img)
    sx0, sy0 = max(0, x0), max(0, y0); sx1, sy1 = min(w, x0 + cw), min(h, y0 + ch)
    full[sy0:sy1, sx0:sx1] = light[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0]
    # The sky is in front of the Moon: its light adds to the sky's.
    img += full
    if rng.random() < 0.6:
        bloom(img, full, r * rng.uniform(0.3, 1.5), rng.uniform(0.2, 0.9))
    return (x, y, r)


def add_planet(img, rng, w, h, size=None):
    x, y = rng.uniform(0, w), rng.uniform(0, h * 0.7)
    s = size or rng.uniform(1.0, 5.0)
    light = np.zeros_like(img)
    cv2.circle(light, (int(x), int(y)), max(1, int(s)), (255, 255, 255), -1, cv2.LINE_AA)
    img += light
    bloom(img, light, s * rng.uniform(2, 8), rng.uniform(0.5, 3.0))
    if rng.random() < 0.3:  # diffraction spikes
        L = s * rng.uniform(6, 20)
        for a in (0, 90):
            dx, dy = L * np.cos(np.radians(a)), L * np.sin(np.radians(a))
            cv2.line(img, (int(x - dx), int(y - dy)), (int(x + dx), int(y + dy)), (200, 200, 200), 1, cv2.LINE_AA)


def add_lamp(img, rng, w, h, post=True):
    short = min(w, h)
    x = rng.uniform(0.05 * w, 0.95 * w); y = rng.uniform(0.35 * h, 0.85 * h)
    s = rng.uniform(0.005, 0.03) * short
    colour = [(120, 190, 255), (255, 255, 255), (200, 230, 255), (90, 160, 255)][int(rng.integers(4))]
    light = np.zeros_like(img)
    style = int(rng.integers(3))
    if style == 0:
        cv2.circle(light, (int(x), int(y)), int(s), colour, -1, cv2.LINE_AA)
    elif style == 1:
        cv2.ellipse(light, (int(x), int(y)), (int(s * 1.6), int(s * 0.5)), 0, 0, 360, colour, -1, cv2.LINE_AA)
    else:
        cv2.rectangle(light, (int(x - s), int(y - s * 0.4)), (int(x + s), int(y + s * 0.4)), colour, -1)
    if post:
        shade = float(rng.uniform(5, 40))
        cv2.line(img, (int(x), int(y + s)), (int(x + rng.uniform(-0.02, 0.02) * h), h), (shade,) * 3, max(2, int(s * 0.3)))
    img += light * 1.3
    bloom(img, light, s * rng.uniform(1.5, 6), rng.uniform(0.8, 4.0))


def add_trees(img, rng, w, h):
    mask = np.zeros(img.shape[:2], np.uint8)
    base = int(h * rng.uniform(0.75, 0.95))
    pts = [(0, h)]
    for xx in np.linspace(0, w, 24):
        pts.append((int(xx), int(base - abs(rng.normal(0, 0.1 * h)))))
    pts.append((w, h))
    cv2.fillPoly(mask, [np.array(pts, np.int32)], 255)
    for _ in range(int(rng.integers(3, 12))):
        x, y = rng.uniform(0, w), base
        a = -np.pi / 2 + rng.uniform(-0.4, 0.4); t = rng.uniform(0.004, 0.015) * h
        stack = [(x, y, a, t, 0)]
        while stack:
            x, y, a, t, d = stack.pop()
            L = rng.uniform(0.05, 0.15) * h * (0.75 ** d)
            x2, y2 = x + L * np.cos(a), y + L * np.sin(a)
            cv2.line(mask, (int(x), int(y)), (int(x2), int(y2)), 255, max(1, int(t)))
            if d < 6:
                for _ in range(2):
                    stack.append((x2, y2, a + rng.uniform(-0.7, 0.7), t * 0.65, d + 1))
    shade = rng.uniform(2, 20)
    m = mask.astype(np.float32)[..., None] / 255
    img[:] = img * (1 - m) + shade * m


def add_roofs(img, rng, w, h, windows=True):
    mask = np.zeros(img.shape[:2], np.uint8)
    x = 0
    while x < w:
        bw = rng.uniform(0.08, 0.3) * w; bh = rng.uniform(0.05, 0.3) * h
        top = h - bh
        pts = np.array([(x, h), (x, top), (x + bw / 2, top - rng.uniform(0, 0.08) * h), (x + bw, top), (x + bw, h)], np.int32)
        cv2.fillPoly(mask, [pts], 255)
        x += bw
    shade = rng.uniform(2, 25)
    m = mask.astype(np.float32)[..., None] / 255
    img[:] = img * (1 - m) + shade * m
    if windows:
        for _ in range(int(rng.integers(0, 25))):
            wx, wy = rng.uniform(0, w), rng.uniform(0.75 * h, h)
            if mask[min(h - 1, int(wy)), min(w - 1, int(wx))]:
                s = rng.uniform(0.004, 0.012) * min(w, h)
                cv2.rectangle(img, (int(wx), int(wy)), (int(wx + s), int(wy + 1.4 * s)), (120, 200, 250), -1)


def add_cloud(img, rng, w, h):
    small = rng.random((max(2, h // 64), max(2, w // 64))).astype(np.float32)
    cloud = cv2.resize(cv2.GaussianBlur(small, (0, 0), 1.5), (w, h), interpolation=cv2.INTER_CUBIC)
    cloud = np.clip((cloud - 0.5) * rng.uniform(1, 3), 0, 1)
    level = rng.uniform(20, 90)
    a = rng.uniform(0.2, 0.6) * cloud[..., None]
    img[:] = img * (1 - a) + level * a


def add_sun(img, rng, w, h):
    x, y = rng.uniform(0.1 * w, 0.9 * w), rng.uniform(0.05 * h, 0.6 * h)
    r = rng.uniform(0.01, 0.04) * min(w, h)
    light = np.zeros_like(img)
    cv2.circle(light, (int(x), int(y)), int(r), (255, 255, 255), -1, cv2.LINE_AA)
    img += light * 2
    bloom(img, light, r * rng.uniform(2, 6), rng.uniform(1.5, 5))


def add_stars(img, rng, w, h):
    n = int(rng.integers(20, 300))
    xs, ys = rng.integers(0, w, n), rng.integers(0, int(h * 0.8), n)
    v = rng.uniform(60, 255, n)
    img[ys, xs] += v[:, None]


def add_headlights(img, rng, w, h):
    y = rng.uniform(0.85, 0.97) * h; x = rng.uniform(0.1, 0.8) * w
    s = rng.uniform(0.006, 0.02) * min(w, h)
    light = np.zeros_like(img)
    for dx in (0, rng.uniform(4, 8) * s):
        cv2.circle(light, (int(x + dx), int(y)), int(s), (230, 245, 255), -1, cv2.LINE_AA)
    img += light
    bloom(img, light, s * 3, 2.0)


def finish(img, rng):
    sigma = rng.uniform(0, 1.5)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img += rng.normal(0, rng.uniform(1, 6), img.shape[:2])[..., None].astype(np.float32)
    out = np.clip(img, 0, 255).astype(np.uint8)
    q = int(rng.integers(60, 95))
    return cv2.imdecode(cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q])[1], cv2.IMREAD_COLOR)


KINDS = ["planet", "lamps", "lamp-nopost", "trees", "roofs", "sun", "stars", "headlights", "cloud", "mix"]


def scene(seed, with_moon, kind=None):
    rng = np.random.default_rng(seed)
    w, h = size_of(rng)
    skind = ["night", "night", "city", "twilight", "day"][int(rng.integers(5))]
    if kind == "sun":
        skind = "day"
    img = sky(rng, w, h, skind)
    truth = np.zeros(0)
    if kind is None:
        kind = KINDS[int(rng.integers(len(KINDS)))]
    parts = {"mix": ["planet", "lamps", "trees", "stars", "cloud"]}.get(kind, [kind])
    if kind == "mix":
        parts = [p for p in parts if rng.random() < 0.6]
    if "stars" in parts and skind in ("night", "city"): add_stars(img, rng, w, h)
    if "cloud" in parts: add_cloud(img, rng, w, h)
    if with_moon:
        truth = np.array(add_moon(img, rng, w, h, clipped=rng.random() < 0.2))
    if "sun" in parts and not with_moon: add_sun(img, rng, w, h)
    if "planet" in parts:
        for _ in range(int(rng.integers(1, 3))): add_planet(img, rng, w, h)
    if "roofs" in parts: add_roofs(img, rng, w, h)
    if "trees" in parts: add_trees(img, rng, w, h)
    if "lamps" in parts:
        for _ in range(int(rng.integers(2, 6))): add_lamp(img, rng, w, h)
    if "lamp-nopost" in parts:
        for _ in range(int(rng.integers(1, 3))): add_lamp(img, rng, w, h, post=False)
    if "headlights" in parts: add_headlights(img, rng, w, h)
    return finish(img, rng), truth, f"{kind}-{skind}"


def main():
    global MAPS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--count", type=int, default=200, help="scenes, half with a Moon (default 200)")
    parser.add_argument("--cache", type=Path, help="keep the scenes here as .npz (they take a second each)")
    parser.add_argument("--verbose", action="store_true", help="list every failure")
    args = parser.parse_args()
    # The generated maps' own size (blander Moons than the shared ones).
    MAPS, where = lunar_maps(generated_size=(720, 360))
    print(f"Moons from {where}; seeds {args.seed}-{args.seed + args.count - 1}.")
    tallies = {name: collections.OrderedDict() for name in DETECTORS}
    for i in range(args.seed, args.seed + args.count):
        with_moon = i % 2 == 0
        kind = KINDS[(i // 2) % len(KINDS)]
        path = args.cache / f"{i}.npz" if args.cache else None
        if path is not None and path.exists():
            data = np.load(path)
            image, truth, label = data["image"], data["truth"], str(data["label"])
        else:
            image, truth, label = scene(i, with_moon, kind)
            if path is not None:
                args.cache.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(path, image=image, truth=truth, label=label)
        truth = tuple(float(v) for v in truth) if len(truth) else None
        for name, detector in DETECTORS.items():
            found, ms = run(image, detector)
            for key in ((f"{'Moon' if truth else 'no Moon'}", f"  {kind}") if truth else ("no Moon", f"  {kind} ")):
                tallies[name].setdefault(key, Tally(key)).add(found, truth, ms)
            wrong = (found is not None) if truth is None else (found is None or not within(found, truth))
            if args.verbose and wrong:
                shown = found and (round(found.x), round(found.y), round(found.radius))
                print(f"  {name} {'miss' if truth else 'false Moon'} {i} {label} {image.shape[1]}x{image.shape[0]}: "
                      f"truth {truth and tuple(round(v) for v in truth)}, found {shown}", flush=True)
    for name, rows in tallies.items():
        print(f"\n{name} on the second generator's scenes")
        print(HEADER)
        order = [k for k in rows if k == "Moon"] + [k for k in rows if k.startswith("  ") and not k.endswith(" ")]
        order += [k for k in rows if k == "no Moon"] + [k for k in rows if k.endswith(" ")]
        for key in order:
            print(rows[key].row())


if __name__ == "__main__":
    main()
