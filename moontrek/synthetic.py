"""Synthetic Moon scenes with known answers, for tests and benchmarks.

Real photos may not be on the machine (tests must run without ../shared), and
three real pairs are too few to measure anything, so the tests and benchmarks
make their own: a cratered, shaded disk, and user "photos" made from it by a
known homography.
"""

import functools
from pathlib import Path

import cv2
import numpy as np

from .registration.geometry import fitted_size, scale_matrix

__all__ = ["render_moon", "encode", "make_pair", "SyntheticPair"]


def render_moon(size=600, *, radius=None, seed=0, craters=300, centre=None):
    """A grey, cratered, limb-darkened Moon disk on black, as 8-bit BGR.

    Height field of bowl craters with raised rims (power-law radii), lit from
    one side; albedo with dark "maria" blobs and fine mottling.
    """
    rng = np.random.default_rng(seed)
    radius = radius or 0.46 * size
    cx, cy = centre if centre is not None else (size / 2.0, size / 2.0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dist = np.hypot(xx - cx, yy - cy) / radius
    inside = dist <= 1.0

    height = np.zeros((size, size), np.float32)
    radii = radius * 0.012 * rng.pareto(1.6, craters).clip(0, 12) + radius * 0.012
    for r in radii:
        ang, rad = rng.uniform(0, 2 * np.pi), radius * np.sqrt(rng.uniform(0, 0.95))
        x0, y0 = cx + rad * np.cos(ang), cy + rad * np.sin(ang)
        x1, x2 = int(max(0, x0 - 2 * r)), int(min(size, x0 + 2 * r + 1))
        y1, y2 = int(max(0, y0 - 2 * r)), int(min(size, y0 + 2 * r + 1))
        if x1 >= x2 or y1 >= y2:
            continue
        d = np.hypot(xx[y1:y2, x1:x2] - x0, yy[y1:y2, x1:x2] - y0) / r
        bowl = np.where(d < 1, d * d - 1, 0.0)
        rim = 0.35 * np.exp(-((d - 1.0) ** 2) / 0.03)
        height[y1:y2, x1:x2] += r * (bowl + rim).astype(np.float32) * 0.5

    gy, gx = np.gradient(height)
    shading = 0.55 + 0.35 * np.tanh(0.8 * (gx * 0.8 - gy * 0.6))

    albedo = np.full((size, size), 0.85, np.float32)
    for _ in range(7):
        mx, my = cx + rng.uniform(-0.7, 0.7) * radius, cy + rng.uniform(-0.7, 0.7) * radius
        sigma = rng.uniform(0.12, 0.3) * radius
        albedo -= 0.25 * np.exp(-((xx - mx) ** 2 + (yy - my) ** 2) / (2 * sigma**2))
    mottling = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), radius * 0.01 + 0.5)
    albedo += 0.6 * mottling / (np.abs(mottling).max() + 1e-6) * 0.15

    limb = np.sqrt(np.clip(1 - dist**2, 0, 1)) ** 0.25
    grey = np.clip(albedo * shading * limb * 235, 0, 255)
    grey = np.where(inside, grey, 0).astype(np.uint8)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def encode(image, ext=".png", quality=None):
    """Encode an image to file bytes, as an upload would carry it."""
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if quality is not None else []
    ok, buffer = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"could not encode an image as {ext}")
    return buffer.tobytes()


class SyntheticPair:
    """A user photo made from a model render by a known homography.

    ``expected`` is the answer in the server's convention: user pixels to the
    pixels of the model resized to fit the user image.
    """

    def __init__(self, user, model, expected, model_to_user):
        self.user = user
        self.model = model
        self.expected = expected
        self.model_to_user = model_to_user


def make_pair(model, *, angle=30.0, scale=0.8, shift=(0.0, 0.0), perspective=(0.0, 0.0), user_size=None):
    """Warp ``model`` into a user photo: rotation about the centre by ``angle``
    degrees, ``scale``, ``shift`` in pixels, and a little ``perspective``."""
    model_h, model_w = model.shape[:2]
    user_w, user_h = user_size or (int(model_w * scale), int(model_h * scale))
    a = np.deg2rad(angle)
    to_origin = np.array([[1, 0, -model_w / 2.0], [0, 1, -model_h / 2.0], [0, 0, 1]])
    rotate = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    tilt = np.array([[1, 0, 0], [0, 1, 0], [perspective[0] / model_w, perspective[1] / model_h, 1]])
    to_user = np.array([[1, 0, user_w / 2.0 + shift[0]], [0, 1, user_h / 2.0 + shift[1]], [0, 0, 1]])
    model_to_user = to_user @ scale_matrix(scale) @ tilt @ rotate @ to_origin
    user = cv2.warpPerspective(model, model_to_user, (user_w, user_h), flags=cv2.INTER_LINEAR)
    fit_w, fit_h = fitted_size(model_w, model_h, user_w, user_h)
    expected = scale_matrix(fit_w / model_w, fit_h / model_h) @ np.linalg.inv(model_to_user)
    return SyntheticPair(user, model, expected / expected[2, 2], model_to_user)


# --- Broad benchmark set: photo-like perturbations of known warps. ---------
#
# Added for the Moon-aware pipeline's accuracy benchmark and tests. A user
# "photo" differs from the render the way real uploads do: flat full-Moon
# lighting against the render's phase shading, colour cast, gamma, blur,
# sensor noise, dark occluders (branches), a sky background, JPEG, and a
# crop around the disk.

__all__ += ["phase_shading", "perturb_photo", "make_benchmark_pairs", "BenchmarkPair"]

BENCHMARK_BASE_SIZE = 600


def phase_shading(image, *, angle=0.0, strength=0.6, centre=None, radius=None):
    """Darken one side of the disk smoothly, like a render's terminator
    (the photo is a flat full Moon, the render is not)."""
    height, width = image.shape[:2]
    cx, cy = centre if centre is not None else (width / 2.0, height / 2.0)
    radius = radius or 0.46 * min(width, height)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    a = np.deg2rad(angle)
    along = ((xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)) / radius
    ramp = 1.0 - strength * 0.5 * (1.0 + np.tanh(2.5 * (along - 0.3)))
    return np.clip(image.astype(np.float32) * ramp[:, :, None], 0, 255).astype(np.uint8)


def _branch(canvas, rng, start, angle, length, thickness, depth):
    end = (start[0] + length * np.cos(angle), start[1] + length * np.sin(angle))
    cv2.line(canvas, tuple(int(v) for v in start), tuple(int(v) for v in end), 255, max(1, int(thickness)), cv2.LINE_AA)
    if depth > 0:
        for turn in (rng.uniform(-0.9, -0.3), rng.uniform(0.3, 0.9)):
            _branch(canvas, rng, end, angle + turn, length * rng.uniform(0.55, 0.8), thickness * 0.65, depth - 1)


def perturb_photo(
    image,
    rng,
    *,
    disk_mask=None,
    cast=None,
    gamma=1.0,
    blur=0.0,
    noise=0.0,
    occluders=0,
    sky=None,
    jpeg=None,
    flatten=1.0,
):
    """Make a clean warped render look like a phone photo of the Moon.

    ``disk_mask`` (uint8, 255 on the disk) tells sky from Moon; without it the
    non-black pixels are the disk. ``cast`` multiplies B, G, R; ``gamma``
    bends the tone curve; ``blur`` is a Gaussian sigma in pixels; ``noise`` a
    Gaussian sigma in grey levels; ``occluders`` the number of dark branching
    silhouettes; ``sky`` a BGR colour for the background; ``jpeg`` a quality;
    ``flatten`` scales the crater relief (1 keeps it, 0 removes it).
    """
    photo = image.astype(np.float32) / 255.0
    if disk_mask is None:
        disk_mask = (cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) > 8).astype(np.uint8) * 255
    if flatten != 1.0:
        # Full-Moon light: crater relief fades, albedo (maria) stays.
        radius = np.sqrt(max(1.0, float(np.count_nonzero(disk_mask))) / np.pi)
        base = cv2.GaussianBlur(photo, (0, 0), max(1.0, 0.03 * radius))
        photo = base + flatten * (photo - base)
    if gamma != 1.0:
        photo = photo**gamma
    if cast is not None:
        photo = photo * np.asarray(cast, np.float32)[None, None, :]
    if sky is not None:
        height, width = photo.shape[:2]
        ramp = np.linspace(0.7, 1.2, height, dtype=np.float32)[:, None, None]
        # The Moon outshines its sky: cap the sky below the disk's level.
        level = max(1e-3, float(cv2.mean(photo, disk_mask)[:3][int(np.argmax(sky))]))
        colour = np.asarray(sky, np.float32) / 255.0
        colour *= min(1.0, 0.45 * level / max(float(colour.max()), 1e-3))
        background = colour[None, None, :] * ramp
        alpha = cv2.GaussianBlur(disk_mask.astype(np.float32) / 255.0, (0, 0), 1.0)[:, :, None]
        photo = photo * alpha + background * (1.0 - alpha)
    if blur > 0:
        photo = cv2.GaussianBlur(photo, (0, 0), blur)
    if occluders:
        height, width = photo.shape[:2]
        shade = np.zeros((height, width), np.uint8)
        for _ in range(occluders):
            start = (rng.uniform(0, width), height * rng.uniform(0.9, 1.1))
            _branch(shade, rng, start, rng.uniform(-2.2, -0.9), 0.25 * min(width, height), 0.02 * min(width, height) + 1, 4)
        dark = shade.astype(np.float32)[:, :, None] / 255.0
        photo = photo * (1.0 - 0.95 * dark)
    if noise > 0:
        photo = photo + rng.normal(0.0, noise / 255.0, photo.shape).astype(np.float32)
    photo = (np.clip(photo, 0, 1) * 255 + 0.5).astype(np.uint8)
    if jpeg is not None:
        photo = cv2.imdecode(np.frombuffer(encode(photo, ".jpg", quality=jpeg), np.uint8), cv2.IMREAD_COLOR)
    return photo


class BenchmarkPair(SyntheticPair):
    """A :class:`SyntheticPair` with the parameters that made it."""

    def __init__(self, user, model, expected, model_to_user, params):
        super().__init__(user, model, expected, model_to_user)
        self.params = params


def _disk_of(image):
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    points = cv2.findNonZero((grey > 8).astype(np.uint8))
    (x, y), r = cv2.minEnclosingCircle(points)
    return x, y, r


def make_benchmark_pairs(n, seed=0, *, sources=None, render_size=1000):
    """``n`` varied pairs with known answers.

    ``sources`` are model images (BGR); by default four renders with different
    seeds. Each pair draws a rotation over the full circle, a scale of the
    user's disk from 0.3x to 3x the model's disk at 600 px, mild perspective,
    a crop around the disk, and a random mix of photo perturbations. Rendered
    sources get a terminator-like shading on the model side only, so the
    model differs photometrically from the photo as a client render does.
    """
    rng = np.random.default_rng(seed)
    rendered = sources is None
    if rendered:
        sources = [render_moon(render_size, seed=seed * 7 + k) for k in range(4)]
    disks = [_disk_of(source) for source in sources]
    pairs = []
    for index in range(n):
        which = int(rng.integers(len(sources)))
        source, (dx, dy, dr) = sources[which], disks[which]
        size = max(source.shape[:2])
        scale = float(np.exp(rng.uniform(np.log(0.3), np.log(3.0))))
        warp_scale = scale * BENCHMARK_BASE_SIZE / size
        angle = float(rng.uniform(0.0, 360.0))
        # make_pair's units: 0.08 changes the scale by about 4% from the
        # centre to the edge of the frame.
        perspective = tuple(float(v) for v in rng.uniform(-0.08, 0.08, 2))
        user_radius = dr * warp_scale
        margin = rng.uniform(1.0, 1.4, 2)
        user_w, user_h = (int(2 * user_radius * m) for m in margin)
        # The disk's centre in the source need not be the frame's centre.
        off = np.array([dx - source.shape[1] / 2.0, dy - source.shape[0] / 2.0]) * warp_scale
        jitter = rng.uniform(-0.08, 0.08, 2) * user_radius
        shift = tuple(float(v) for v in jitter - off)
        pair = make_pair(
            source, angle=angle, scale=warp_scale, shift=shift, perspective=perspective, user_size=(user_w, user_h)
        )
        mask = cv2.warpPerspective(
            cv2.circle(np.zeros(source.shape[:2], np.uint8), (int(dx), int(dy)), int(dr), 255, -1),
            pair.model_to_user,
            (user_w, user_h),
        )
        params = {
            "source": which,
            "angle": angle,
            "scale": scale,
            "perspective": perspective,
            "user_size": (user_w, user_h),
            "cast": tuple(float(v) for v in rng.uniform(0.45, 1.15, 3)) if rng.random() < 0.7 else None,
            "gamma": float(rng.uniform(0.6, 1.6)),
            "blur": float(rng.uniform(0.0, 2.0) * max(1.0, user_radius / 300.0)) if rng.random() < 0.6 else 0.0,
            "noise": float(rng.uniform(1.0, 10.0)) if rng.random() < 0.6 else 0.0,
            "occluders": int(rng.integers(1, 4)) if rng.random() < 0.25 else 0,
            "sky": tuple(float(v) for v in rng.uniform(10, 110, 3)) if rng.random() < 0.5 else None,
            "jpeg": int(rng.integers(60, 96)) if rng.random() < 0.7 else None,
            "flatten": float(rng.uniform(0.35, 1.0)),
        }
        user = perturb_photo(
            pair.user,
            rng,
            disk_mask=mask,
            **{k: params[k] for k in ("cast", "gamma", "blur", "noise", "occluders", "sky", "jpeg", "flatten")},
        )
        model = source
        if rendered:
            model = phase_shading(
                source, angle=float(rng.uniform(0, 360)), strength=float(rng.uniform(0.2, 0.7)), centre=(dx, dy), radius=dr
            )
        pairs.append(BenchmarkPair(user, model, pair.expected, pair.model_to_user, params))
    return pairs


# --- Detection scenes: night skies with one known Moon, or none. -----------

__all__ += ["make_sky_scene", "make_no_moon_scene"]


def make_sky_scene(
    size=(800, 600),
    *,
    seed=0,
    radius=None,
    centre=None,
    sky=(40, 20, 10),
    gradient=0.0,
    tint=(1.0, 1.0, 1.0),
    brightness=1.0,
    halo=0.0,
    phase=None,
    branches=0,
    noise=0.0,
    jpeg=None,
):
    """A photo-like night scene with one Moon and its known disk.

    ``size`` is (width, height); ``sky`` the BGR colour of the sky, brighter
    towards the bottom by ``gradient`` (0 to 1); ``tint`` multiplies the
    Moon's BGR (an orange Moon is (0.45, 0.75, 1.0)); ``halo`` adds a glow of
    that strength around the disk; ``phase`` is None for a full Moon or the
    (dx, dy) shift, in radii, of the dark disk that hides part of it (about
    (1.2, 0) is a crescent lit on the left); ``branches`` draws that many thick
    dark lines across the Moon; ``noise`` is the sensor noise's standard
    deviation in grey levels; ``jpeg`` a JPEG quality to round-trip through.

    Returns ``(image, (x, y, radius))``: the full disk, even where unlit.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    radius = float(radius if radius is not None else rng.uniform(0.05, 0.3) * min(width, height))
    if centre is None:
        centre = (rng.uniform(radius, width - radius), rng.uniform(radius, height - radius))
    cx, cy = float(centre[0]), float(centre[1])
    image = _sky(width, height, sky, gradient)

    # The Moon is rendered on its own square canvas, then pasted.
    pad = 3
    side = int(np.ceil(2 * radius)) + 2 * pad
    craters = int(np.clip(radius * 2, 20, 300))
    moon = render_moon(side, radius=radius, seed=int(rng.integers(1 << 30)), craters=craters).astype(np.float32)
    ox, oy = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    local = (cx - ox, cy - oy)
    # render_moon centres its disk on the canvas; shift it to the true centre.
    shift = np.float32([[1, 0, local[0] - side / 2.0], [0, 1, local[1] - side / 2.0]])
    moon = cv2.warpAffine(moon, shift, (side, side), flags=cv2.INTER_LINEAR)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    disk = np.clip(radius + 0.5 - np.hypot(xx - local[0], yy - local[1]), 0, 1)
    lit = disk.copy()
    if phase is not None:
        dark = np.clip(radius + 0.5 - np.hypot(xx - local[0] - phase[0] * radius, yy - local[1] - phase[1] * radius), 0, 1)
        lit = lit * (1.0 - dark)
    # The disk's own grey is raised so that, as in photos, even maria are far
    # brighter than the night sky.
    moon = (0.35 + 0.75 * moon / 255.0) * 255.0 * brightness * np.float32(tint)[None, None, :]

    canvas = np.zeros((height, width, 3), np.float32)
    x1, y1 = max(ox, 0), max(oy, 0)
    x2, y2 = min(ox + side, width), min(oy + side, height)
    if x1 < x2 and y1 < y2:
        sub = (slice(y1 - oy, y2 - oy), slice(x1 - ox, x2 - ox))
        alpha = lit[sub][..., None]
        region = image[y1:y2, x1:x2]
        image[y1:y2, x1:x2] = region * (1 - disk[sub][..., None]) + moon[sub] * alpha + region * (disk[sub] - lit[sub])[..., None]
        canvas[y1:y2, x1:x2] = alpha * np.float32(tint)[None, None, :] * 255.0 * brightness

    if halo > 0:
        glow = cv2.GaussianBlur(canvas, (0, 0), max(2.0, 0.6 * radius))
        glow += 0.5 * cv2.GaussianBlur(canvas, (0, 0), max(4.0, 2.0 * radius))
        image = image + halo * glow

    for _ in range(branches):
        # A twig: from well outside the disk to somewhere across it.
        a = rng.uniform(0, 2 * np.pi)
        start = (cx + 2.5 * radius * np.cos(a), cy + 2.5 * radius * np.sin(a))
        end_angle, end_radius = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.9) * radius
        end = (cx + end_radius * np.cos(end_angle), cy + end_radius * np.sin(end_angle))
        thickness = int(max(2, rng.uniform(0.02, 0.08) * radius))
        colour = tuple(float(v) for v in rng.uniform(0, 25, 3))
        cv2.line(image, tuple(int(v) for v in start), tuple(int(v) for v in end), colour, thickness, cv2.LINE_AA)

    return _finish(image, rng, noise, jpeg), (cx, cy, radius)


def make_no_moon_scene(kind, size=(800, 600), *, seed=0, noise=4.0, jpeg=None):
    """A scene without a Moon, of one ``kind``: "blank" (one flat colour),
    "noise" (pure sensor noise), "gradient" (a twilight sky), "coins" (several
    bright coins seen at a slant on a textured table) or "lamps" (a dark
    street with a row of equal round lights)."""
    rng = np.random.default_rng(seed)
    width, height = size
    if kind == "blank":
        image = np.empty((height, width, 3), np.float32)
        image[:] = rng.uniform(0, 255, 3)
        noise = 0.0 if noise is None else noise * 0.25
    elif kind == "noise":
        image = np.full((height, width, 3), rng.uniform(30, 200), np.float32)
        noise = max(noise, 40.0)
    elif kind == "gradient":
        image = _sky(width, height, tuple(rng.uniform(10, 120, 3)), rng.uniform(0.5, 1.5))
    elif kind == "coins":
        base = rng.uniform(40, 110, 3)
        grain = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), 3)
        grain = grain / (np.abs(grain).max() + 1e-6)
        image = base[None, None, :] * (1.0 + 0.35 * grain[..., None])
        image = image.astype(np.float32)
        r = rng.uniform(0.04, 0.1) * min(width, height)
        tilt = rng.uniform(0.6, 1.0)
        metal = rng.uniform(150, 240, 3)
        for _ in range(int(rng.integers(4, 12))):
            x, y = rng.uniform(r, width - r), rng.uniform(r, height - r)
            colour = tuple(float(v) for v in np.clip(metal + rng.uniform(-20, 20, 3), 0, 255))
            cv2.ellipse(image, (int(x), int(y)), (int(r), int(r * tilt)), rng.uniform(0, 180), 0, 360, colour, -1, cv2.LINE_AA)
    elif kind == "lamps":
        image = _sky(width, height, tuple(rng.uniform(5, 40, 3)), 0.3)
        r = rng.uniform(0.01, 0.04) * min(width, height)
        y = rng.uniform(0.3, 0.7) * height
        count = int(rng.integers(3, 7))
        for i in range(count):
            x = (i + 0.5) / count * width
            cv2.circle(image, (int(x), int(y)), int(r), (200, 230, 255), -1, cv2.LINE_AA)
        image = image + 0.6 * cv2.GaussianBlur(image, (0, 0), 2 * r)
    else:
        raise ValueError(f"unknown kind of scene: {kind}")
    return _finish(image, rng, noise, jpeg)


# --- Whole phone photos: the Moon small anywhere in a real-looking night. --
#
# What API and CLI users send: the photo as the phone took it, 4:3 or 16:9,
# portrait or landscape, 2 to 12 Mpx, the Moon 8-30% of the short side, with
# what night skies hold beside it (a planet, stars, street lamps, horizon
# silhouettes, halo, thin cloud), and Moon-less scenes that fool detectors.

__all__ += ["make_phone_photo", "make_clipped_moon_photo", "make_no_moon_photo", "PHONE_NO_MOON_KINDS", "PHONE_DISTRACTORS"]

#: Kinds of Moon-less phone photo make_no_moon_photo draws.
PHONE_NO_MOON_KINDS = ("dot", "stars", "lamps", "lamp", "coins", "sun", "blank", "noise", "horizon")
#: Things make_phone_photo may put beside the Moon.
PHONE_DISTRACTORS = ("planet", "stars", "lamps", "trees", "roofs")

_SHARED_TEXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "textures"


@functools.lru_cache(maxsize=2)
def _albedo_map(path):
    """The equirectangular albedo map as float32 grey (0-1), or None when absent."""
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if Path(path).exists() else None
    return None if grey is None else grey.astype(np.float32) / 255.0


def _albedo_moon(radius, rng, path=None):
    """An orthographic view of the normal-albedo map (the full Moon as photos
    show it: bright rays and highlands, dark maria), at a random libration of
    up to 8 degrees and a random position angle, on a black square canvas of
    side 2 * ceil(radius) + 6 centred on the disk; None without the map."""
    albedo = _albedo_map(str(path or _SHARED_TEXTURES / "ldam_10.png"))
    if albedo is None:
        return None
    side = 2 * int(np.ceil(radius)) + 6
    centre = (side - 1) / 2.0
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    u, v = (xx - centre) / radius, (centre - yy) / radius
    rho2 = u * u + v * v
    inside = rho2 <= 1.0
    z = np.sqrt(np.clip(1.0 - rho2, 0.0, 1.0))
    pa = rng.uniform(0, 2 * np.pi)
    u, v = u * np.cos(pa) - v * np.sin(pa), u * np.sin(pa) + v * np.cos(pa)
    lat0, lon0 = np.deg2rad(rng.uniform(-8, 8, 2))
    # Rotate the view by the libration: latitude about x, then longitude about y.
    y1 = v * np.cos(lat0) + z * np.sin(lat0)
    z1 = -v * np.sin(lat0) + z * np.cos(lat0)
    x2 = u * np.cos(lon0) + z1 * np.sin(lon0)
    z2 = -u * np.sin(lon0) + z1 * np.cos(lon0)
    lat, lon = np.arcsin(np.clip(y1, -1, 1)), np.arctan2(x2, z2)
    h, w = albedo.shape
    map_x = ((lon / (2 * np.pi) + 0.5) * w - 0.5).astype(np.float32)
    map_y = ((0.5 - lat / np.pi) * h - 0.5).astype(np.float32)
    # Blur the map to the disk's resolution first: remap does not average.
    sigma = max(0.0, 0.5 * w / (np.pi * radius * 2) - 0.5)
    source = cv2.GaussianBlur(albedo, (0, 0), sigma) if sigma > 0.3 else albedo
    grey = cv2.remap(source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    grey = np.where(inside, 0.25 + 0.75 * grey / max(float(grey[inside].max()), 1e-3), 0.0)
    return cv2.cvtColor((grey * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR), (centre, centre, float(radius))


def _phone_size(rng, orientation, aspect, megapixels):
    orientation = orientation or ("portrait" if rng.random() < 0.5 else "landscape")
    aspect = aspect or ("4:3" if rng.random() < 0.6 else "16:9")
    megapixels = float(megapixels if megapixels is not None else np.exp(rng.uniform(np.log(2), np.log(12))))
    ratio = {"4:3": 4 / 3, "16:9": 16 / 9}[aspect]
    short = int(round(np.sqrt(megapixels * 1e6 / ratio) / 2) * 2)
    long = int(round(short * ratio / 2) * 2)
    width, height = (short, long) if orientation == "portrait" else (long, short)
    return width, height, orientation, aspect, megapixels


def _night_sky(rng, width, height, sky=None, gradient=None, ceiling=None):
    """A night or twilight sky: a base colour, brighter towards the horizon,
    as float32 BGR, its brightest (luminance) no more than ``ceiling``."""
    if sky is None:
        kind = rng.choice(["night", "night", "blue-hour", "city", "twilight"])
        sky = {
            "night": rng.uniform(2, 25, 3),
            "blue-hour": np.array([rng.uniform(60, 110), rng.uniform(35, 60), rng.uniform(15, 35)]),
            "city": np.array([rng.uniform(15, 35), rng.uniform(25, 45), rng.uniform(35, 60)]),
            "twilight": np.array([rng.uniform(40, 80), rng.uniform(50, 80), rng.uniform(60, 110)]),
        }[kind]
    gradient = float(rng.uniform(0.0, 1.5) if gradient is None else gradient)
    sky = np.asarray(sky, float)
    if ceiling is not None:
        brightest = float(np.array([0.114, 0.587, 0.299]) @ sky) * (1.0 + max(gradient, 0.0))
        sky = sky * min(1.0, ceiling / max(brightest, 1e-3))
    return _sky(width, height, tuple(float(v) for v in sky), gradient)


def _add_glow(image, x, y, radius, colour, strength, spread):
    """A soft glare of ``strength`` (in grey levels at the centre) whose
    Gaussian sigma is ``spread`` times ``radius``, drawn in its box only."""
    height, width = image.shape[:2]
    sigma = max(1.0, spread * radius)
    reach = int(4 * sigma + radius)
    x0, x1 = max(0, int(x) - reach), min(width, int(x) + reach + 1)
    y0, y1 = max(0, int(y) - reach), min(height, int(y) + reach + 1)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.ogrid[y0:y1, x0:x1]
    d2 = (xx - x) ** 2 + (yy - y) ** 2
    glow = strength * np.exp(-d2 / (2.0 * sigma * sigma)).astype(np.float32)
    image[y0:y1, x0:x1] += glow[..., None] * (np.float32(colour) / 255.0)[None, None, :]


def _add_disk(image, x, y, radius, colour, glow=0.0, spread=3.0):
    """A bright anti-aliased disk (a lamp, a planet, a star) with its glare."""
    height, width = image.shape[:2]
    reach = int(radius + 2)
    x0, x1 = max(0, int(x) - reach), min(width, int(x) + reach + 1)
    y0, y1 = max(0, int(y) - reach), min(height, int(y) + reach + 1)
    if x0 < x1 and y0 < y1:
        yy, xx = np.ogrid[y0:y1, x0:x1]
        alpha = np.clip(radius + 0.5 - np.hypot(xx - x, yy - y), 0, 1).astype(np.float32)[..., None]
        region = image[y0:y1, x0:x1]
        image[y0:y1, x0:x1] = region * (1 - alpha) + alpha * np.float32(colour)[None, None, :]
    if glow:
        _add_glow(image, x, y, radius, colour, glow, spread)


def _add_horizon(image, rng, kind, top):
    """Dark silhouettes along the bottom, rising to ``top`` (a fraction of the
    height): "trees" (lumpy crowns and trunks) or "roofs" (gables and
    chimneys, a few lit windows). Returns the silhouette mask."""
    height, width = image.shape[:2]
    mask = np.zeros((height, width), np.uint8)
    base = int(height * (1.0 - top))
    if kind == "trees":
        x = -rng.uniform(0, 0.05) * width
        while x < width:
            crown = rng.uniform(0.02, 0.09) * width
            peak = base + rng.uniform(0, 0.6) * (height - base)
            for _ in range(int(rng.integers(3, 8))):
                cx, cy = x + rng.uniform(-0.5, 0.5) * crown, peak + rng.uniform(0, 1.2) * crown
                axes = (int(crown * rng.uniform(0.4, 0.9)), int(crown * rng.uniform(0.5, 1.1)))
                cv2.ellipse(mask, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, 255, -1)
            cv2.rectangle(mask, (int(x - 0.08 * crown), int(peak)), (int(x + 0.08 * crown), height), 255, -1)
            x += crown * rng.uniform(0.6, 1.6)
        for _ in range(int(rng.integers(0, 4))):
            # Bare twigs reaching up into the sky.
            start = (rng.uniform(0, width), base + rng.uniform(0, 0.3) * (height - base))
            _branch(mask, rng, start, rng.uniform(-2.4, -0.7), 0.12 * height, 0.004 * width + 1, 3)
    else:
        x = -rng.uniform(0, 0.1) * width
        while x < width:
            w = rng.uniform(0.08, 0.25) * width
            eave = base + rng.uniform(0.2, 0.8) * (height - base)
            ridge = eave - rng.uniform(0.2, 0.6) * w * 0.5
            points = np.array([[x, height], [x, eave], [x + w / 2, ridge], [x + w, eave], [x + w, height]], np.int32)
            cv2.fillPoly(mask, [points], 255)
            if rng.random() < 0.5:
                cx = x + rng.uniform(0.6, 0.8) * w
                cv2.rectangle(mask, (int(cx), int(ridge + 0.1 * (eave - ridge))), (int(cx + 0.04 * w), int(eave)), 255, -1)
            x += w * rng.uniform(0.9, 1.2)
    # Only the rows the silhouettes reach: whole-frame float passes are slow at 12 Mpx.
    rows = np.flatnonzero(mask.max(axis=1))
    first = int(rows[0]) if len(rows) else height
    shade = mask[first:].astype(np.float32)[..., None] / 255.0
    dark = np.float32(rng.uniform(0, 15, 3))[None, None, :]
    image[first:] *= 1.0 - shade
    image[first:] += shade * dark
    if kind == "roofs":
        # Lit windows: small warm rectangles inside the buildings.
        side = max(3, int(0.012 * width))
        for _ in range(int(rng.integers(0, 8))):
            wx, wy = int(rng.uniform(0, width - side)), int(rng.uniform(base, height - side))
            if mask[min(height - 1, wy + side), min(width - 1, wx + side)] and mask[wy, wx]:
                image[wy : wy + side, wx : wx + int(side * 1.4)] = rng.uniform(120, 230) * np.float32([0.6, 0.85, 1.0])
    return mask


def _add_cloud(image, rng, strength, light):
    """Thin cloud: a low-frequency veil that dims what is behind it and
    scatters ``light`` (an image of the light sources) around them."""
    height, width = image.shape[:2]
    small = cv2.resize(
        rng.random((max(4, height // 64), max(4, width // 64))).astype(np.float32), (max(8, width // 8), max(8, height // 8))
    )
    small = cv2.GaussianBlur(small, (0, 0), 3)
    small = (small - small.min()) / max(float(np.ptp(small)), 1e-6)
    veil = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)[..., None] * strength
    image *= 1.0 - 0.5 * veil
    image += veil * light


def _phase_light(side, centre, radius, phase, direction):
    """Sunlit brightness of a sphere's disk at ``phase`` degrees (0 full, 90
    a half Moon, 150 a thin crescent), the lit limb towards ``direction``
    degrees: Lommel-Seeliger, flat at full Moon as photos are."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    u, v = (xx - centre[0]) / radius, (yy - centre[1]) / radius
    z = np.sqrt(np.clip(1.0 - u * u - v * v, 0.0, 1.0))
    a, d = np.deg2rad(phase), np.deg2rad(direction)
    sun = np.array([np.sin(a) * np.cos(d), np.sin(a) * np.sin(d), np.cos(a)], np.float32)
    cos_i = u * sun[0] + v * sun[1] + z * sun[2]
    # A soft terminator a few percent of the radius wide, as the Moon's relief makes it.
    lit = np.clip(cos_i / 0.04 + 0.5, 0, 1) * np.clip(cos_i, 0, None) / np.maximum(np.clip(cos_i, 0, None) + z, 1e-3)
    return np.clip(2.0 * lit, 0.0, 1.0)


def make_phone_photo(
    seed=0,
    *,
    orientation=None,
    aspect=None,
    megapixels=None,
    moon=None,
    circle=None,
    fraction=None,
    centre=None,
    angle=None,
    phase=None,
    direction=None,
    clipped=None,
    distractors=None,
    halo=None,
    cloud=None,
    exposure=None,
    tint=None,
    blur=None,
    sky=None,
    gradient=None,
    noise=None,
    jpeg=None,
):
    """A whole phone photo of the night sky with the Moon in it, and its disk.

    Every option left as None is drawn at random from ``seed``:

    - ``orientation`` "portrait" or "landscape"; ``aspect`` "4:3" or "16:9";
      ``megapixels`` 2 to 12.
    - ``moon``: a BGR (or BGRA) image holding a Moon disk, with ``circle``
      (x, y, radius) its disk in that image's pixels, to paste into the sky;
      None renders one (the albedo map ../shared/data/textures/ldam_10.png
      when present, else :func:`render_moon`).
    - ``fraction``: the disk's diameter over the photo's short side (0.08 to
      0.3); ``centre`` (x, y) in the photo; ``angle`` the rotation in degrees
      of the pasted Moon; ``clipped`` True puts the disk across a frame edge
      (the centre stays inside).
    - ``phase`` in degrees (0 full, 90 half, up to ~150 a thin crescent) and
      ``direction`` of the lit limb in degrees.
    - ``distractors``: a subset of PHONE_DISTRACTORS ("planet", "stars",
      "lamps", "trees", "roofs").
    - ``halo`` glow strength (0 to ~1); ``cloud`` thin cloud (0 to ~0.8);
      ``exposure`` the disk's brightest level over 255 (above 1 saturates);
      ``tint`` BGR gains; ``blur`` a Gaussian sigma in pixels of the disk;
      ``sky`` a BGR colour; ``gradient``; ``noise`` in grey levels; ``jpeg``
      a quality (0 for none).

    Returns ``(image, (x, y, radius), info)``: the BGR uint8 photo, the full
    disk in its pixels (also where unlit or outside the frame), and a dict of
    the choices made, with ``info["moon_to_photo"]`` the 3x3 transform from
    the source Moon image's pixels to the photo's (and, when the Moon was
    rendered here, that source in ``info["moon_image"]``, ``info["moon_circle"]``).
    """
    rng = np.random.default_rng(seed)
    width, height, orientation, aspect, megapixels = _phone_size(rng, orientation, aspect, megapixels)
    short = min(width, height)
    fraction = float(fraction if fraction is not None else np.exp(rng.uniform(np.log(0.08), np.log(0.3))))
    radius = 0.5 * fraction * short
    if distractors is None:
        distractors = tuple(d for d in PHONE_DISTRACTORS if rng.random() < 0.4)
    distractors = tuple(distractors)
    horizon_top = float(rng.uniform(0.06, 0.25)) if ("trees" in distractors or "roofs" in distractors) else 0.0
    clipped = bool(rng.random() < 0.15) if clipped is None else bool(clipped)
    if centre is None:
        if clipped:
            # Across one edge, but not the bottom's silhouettes.
            side = int(rng.integers(3))
            inset = rng.uniform(0.35, 0.95) * radius
            along = (rng.uniform(radius, width - radius), rng.uniform(radius, height * (1 - horizon_top) - radius))
            centre = [(inset, along[1]), (width - inset, along[1]), (along[0], inset)][side]
        else:
            low = height * (1.0 - horizon_top) - 1.1 * radius
            centre = (rng.uniform(radius, width - radius), rng.uniform(radius, max(radius + 1, low)))
    cx, cy = float(centre[0]), float(centre[1])
    phase = float(rng.choice([0.0, rng.uniform(0, 60), rng.uniform(60, 150)], p=[0.4, 0.3, 0.3])) if phase is None else float(phase)
    direction = float(rng.uniform(0, 360) if direction is None else direction)
    angle = float(rng.uniform(0, 360) if angle is None else angle)
    halo = float(rng.uniform(0.1, 1.0) if rng.random() < 0.35 else 0.0) if halo is None else float(halo)
    cloud = float(rng.uniform(0.1, 0.7) if rng.random() < 0.25 else 0.0) if cloud is None else float(cloud)
    exposure = float(rng.uniform(0.75, 2.2)) if exposure is None else float(exposure)
    if tint is None:
        tint = (1.0, 1.0, 1.0) if rng.random() < 0.6 else tuple(float(v) for v in rng.uniform([0.5, 0.75, 0.9], [1.0, 1.0, 1.0]))
    blur = float(rng.uniform(0, 0.004) * radius + rng.uniform(0, 1.0)) if blur is None else float(blur)
    noise = float(rng.uniform(1.0, 6.0)) if noise is None else float(noise)
    jpeg = int(rng.integers(70, 96)) if jpeg is None else int(jpeg)

    info = {
        "size": (width, height), "orientation": orientation, "aspect": aspect, "megapixels": megapixels,
        "fraction": fraction, "phase": phase, "direction": direction, "angle": angle, "clipped": clipped,
        "distractors": distractors, "halo": halo, "cloud": cloud, "exposure": exposure, "tint": tint,
        "blur": blur, "noise": noise, "jpeg": jpeg,
    }
    # The source disk, rendered here unless given.
    if moon is None:
        rendered = _albedo_moon(radius, rng) if rng.random() < 0.7 else None
        if rendered is None:
            side = 2 * int(np.ceil(radius)) + 6
            moon = render_moon(side, radius=radius, seed=int(rng.integers(1 << 30)), craters=int(np.clip(2 * radius, 30, 300)))
            circle = ((side - 1) / 2.0, (side - 1) / 2.0, float(radius))
            info["source"] = "render_moon"
        else:
            moon, circle = rendered
            info["source"] = "ldam_10"
        info["moon_image"], info["moon_circle"] = moon, circle
    elif circle is None:
        raise ValueError("a given moon image needs its circle (x, y, radius)")
    mx, my, mr = (float(v) for v in circle)
    scale = radius / mr
    a = np.deg2rad(angle)
    moon_to_photo = np.array(
        [[1, 0, cx], [0, 1, cy], [0, 0, 1]]
    ) @ np.array([[scale * np.cos(a), -scale * np.sin(a), 0], [scale * np.sin(a), scale * np.cos(a), 0], [0, 0, 1]]) @ np.array(
        [[1, 0, -mx], [0, 1, -my], [0, 0, 1]]
    )
    info["moon_to_photo"] = moon_to_photo

    # In a photo of the Moon the exposure is set by the Moon: the sky, even
    # at dusk near the horizon, stays well below the disk's level.
    moon_level = min(255.0, 255.0 * exposure) * float(np.array([0.114, 0.587, 0.299]) @ np.float32(tint))
    image = _night_sky(rng, width, height, sky, gradient, ceiling=min(170.0, 0.55 * moon_level))
    light = np.zeros((height, width, 3), np.float32) if cloud else None

    # The Moon, warped into its box of the photo.
    reach = int(np.ceil(radius * 1.02)) + 4
    x0, x1 = max(0, int(cx) - reach), min(width, int(cx) + reach + 1)
    y0, y1 = max(0, int(cy) - reach), min(height, int(cy) + reach + 1)
    box_w, box_h = x1 - x0, y1 - y0
    local = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], float) @ moon_to_photo
    source = moon.astype(np.float32)
    alpha_src = source[..., 3] / 255.0 if source.ndim == 3 and source.shape[2] == 4 else None
    colour = source[..., :3] if source.ndim == 3 else np.repeat(source[..., None], 3, axis=2)
    patch = cv2.warpAffine(colour, local[:2], (box_w, box_h), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    yy, xx = np.mgrid[0:box_h, 0:box_w].astype(np.float32)
    disk = np.clip(radius + 0.5 - np.hypot(xx - (cx - x0), yy - (cy - y0)), 0, 1)
    if alpha_src is not None:
        disk = disk * cv2.warpAffine(alpha_src, local[:2], (box_w, box_h), flags=cv2.INTER_LINEAR)
    grey = cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY)
    top = max(float(np.percentile(grey[disk > 0.5], 98)) if (disk > 0.5).any() else 255.0, 1.0)
    side = max(box_w, box_h)
    lit = _phase_light(side, (cx - x0, cy - y0), radius, phase, direction)[:box_h, :box_w]
    moon_light = patch * (exposure * 255.0 / top) * lit[..., None] * np.float32(tint)[None, None, :]
    if blur > 0.3:
        moon_light = cv2.GaussianBlur(moon_light * disk[..., None], (0, 0), blur)
    else:
        moon_light = moon_light * disk[..., None]
    # The sky's light is scattered in front of the Moon: the disk adds to
    # it, and its unlit part is as dark as the sky, as in photos.
    image[y0:y1, x0:x1] += moon_light
    if halo or cloud:
        glow_source = np.zeros((height, width, 3), np.float32)
        glow_source[y0:y1, x0:x1] = np.minimum(moon_light, 255.0)
        small = cv2.resize(glow_source, (max(8, width // 8), max(8, height // 8)), interpolation=cv2.INTER_AREA)
        glow = cv2.GaussianBlur(small, (0, 0), max(1.0, 0.8 * radius / 8))
        glow += 0.5 * cv2.GaussianBlur(small, (0, 0), max(2.0, 2.5 * radius / 8))
        glow = cv2.resize(glow, (width, height), interpolation=cv2.INTER_LINEAR)
        if halo:
            image += halo * glow
        if cloud:
            light += 2.0 * glow

    if "stars" in distractors:
        for _ in range(int(rng.integers(3, 30))):
            sx, sy = rng.uniform(0, width), rng.uniform(0, height)
            if np.hypot(sx - cx, sy - cy) > 1.3 * radius:
                _add_disk(image, sx, sy, rng.uniform(0.5, 1.5) * short / 1500, rng.uniform(60, 200, 3), glow=rng.uniform(0, 40), spread=1.5)
    if "planet" in distractors:
        for _ in range(20):
            dist, where = rng.uniform(1.4, 6.0) * radius, rng.uniform(0, 2 * np.pi)
            px, py = cx + dist * np.cos(where), cy + dist * np.sin(where)
            if 0 < px < width and 0 < py < height * (1 - horizon_top):
                break
        pr = rng.uniform(0.0015, 0.006) * short
        info["planet"] = (float(px), float(py), float(pr))
        _add_disk(image, px, py, pr, rng.uniform([200, 220, 230], [255, 255, 255]), glow=rng.uniform(40, 200), spread=rng.uniform(1.5, 4))
        if light is not None:
            _add_glow(light, px, py, pr, (255, 255, 255), 150, 6)
    mask = None
    for kind in ("trees", "roofs"):
        if kind in distractors:
            mask = _add_horizon(image, rng, kind, horizon_top if mask is None else 0.7 * horizon_top)
    if "lamps" in distractors:
        count = int(rng.integers(1, 5))
        lamp_r = rng.uniform(0.004, 0.02) * short
        base = height * (1.0 - rng.uniform(0.05, max(0.06, horizon_top + 0.1)))
        warm = rng.random() < 0.6
        for i in range(count):
            lx = rng.uniform(0.05, 0.95) * width
            ly = base + rng.uniform(-0.05, 0.03) * height
            if np.hypot(lx - cx, ly - cy) < radius + 6 * lamp_r:
                continue
            cv2.line(image, (int(lx), int(ly)), (int(lx), height), (5.0, 5.0, 5.0), max(1, int(lamp_r * 0.4)))
            colour = (120, 200, 255) if warm else (250, 250, 245)
            r = lamp_r * rng.uniform(0.7, 1.3)
            _add_disk(image, lx, ly, r, (min(255, colour[0] * 1.5), 255, 255), glow=rng.uniform(80, 300), spread=rng.uniform(1.5, 5))
            if light is not None:
                _add_glow(light, lx, ly, r, colour, 200, 8)
    if cloud:
        _add_cloud(image, rng, cloud, light)
    photo = _finish_fast(image, rng, noise, jpeg)
    return photo, (cx, cy, float(radius)), info


def make_clipped_moon_photo(seed):
    """A gibbous Moon (phase 10-50 degrees, exposure 0.7-1) across the frame's
    edge of a 2.5 Mpx phone photo, among whatever distractors ``seed`` draws:
    part of its lit limb outside the frame. The Moon is render_moon's, so the
    photo is the same with or without ../shared. Returns what
    make_phone_photo does."""
    rng = np.random.default_rng(seed)
    moon = render_moon(608, radius=300, seed=seed, craters=300)
    return make_phone_photo(
        seed, megapixels=2.5, moon=moon, circle=(303.5, 303.5, 300.0), clipped=True,
        phase=float(rng.uniform(10, 50)), exposure=float(rng.uniform(0.7, 1.0)),
    )


def make_no_moon_photo(kind, seed=0, *, orientation=None, aspect=None, megapixels=None, noise=None, jpeg=None):
    """A whole phone photo with no Moon in it, of one of PHONE_NO_MOON_KINDS:
    "dot" (one bright planet or star with its glare, nothing else), "stars"
    (a starry sky), "lamps" (a street of lamps with glare above roofs or
    trees), "lamp" (one large lamp in its glare), "coins" (coins on a
    table), "sun" (the Sun's glare in a daytime sky, with lens ghosts),
    "blank", "noise" or "horizon" (a night sky over silhouettes with lit
    windows). Returns ``(image, info)``."""
    rng = np.random.default_rng(seed)
    width, height, orientation, aspect, megapixels = _phone_size(rng, orientation, aspect, megapixels)
    short = min(width, height)
    noise = float(rng.uniform(1.0, 6.0)) if noise is None else float(noise)
    jpeg = int(rng.integers(70, 96)) if jpeg is None else int(jpeg)
    info = {"kind": kind, "size": (width, height), "orientation": orientation, "aspect": aspect, "megapixels": megapixels}
    if kind in ("blank", "noise", "coins"):
        # The detection scenes, at a phone's size.
        image = make_no_moon_scene(kind, size=(width, height), seed=seed, noise=noise, jpeg=None).astype(np.float32)
        noise = 0.0
    elif kind == "sun":
        image = _sky(width, height, tuple(rng.uniform([150, 110, 60], [240, 200, 160])), -rng.uniform(0.0, 0.4))
        sx, sy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.7) * height
        sr = rng.uniform(0.01, 0.05) * short
        _add_disk(image, sx, sy, sr, (255, 255, 255))
        _add_glow(image, sx, sy, sr, (255, 255, 250), rng.uniform(300, 900), rng.uniform(2, 6))
        _add_glow(image, sx, sy, sr, (240, 250, 255), rng.uniform(60, 150), rng.uniform(10, 25))
        # Lens ghosts along the line through the frame's centre.
        for t in rng.uniform(-1.2, -0.2, int(rng.integers(0, 5))):
            gx, gy = width / 2 + t * (sx - width / 2), height / 2 + t * (sy - height / 2)
            _add_disk(image, gx, gy, rng.uniform(0.005, 0.04) * short, tuple(rng.uniform(180, 255, 3)), glow=20, spread=1)
        if rng.random() < 0.6:
            _add_horizon(image, rng, "trees" if rng.random() < 0.5 else "roofs", rng.uniform(0.06, 0.25))
        info["sun"] = (float(sx), float(sy), float(sr))
    else:
        image = _night_sky(rng, width, height)
        if kind in ("dot", "stars"):
            count = 1 if kind == "dot" else int(rng.integers(10, 80))
            for i in range(count):
                px, py = rng.uniform(0.05, 0.95) * width, rng.uniform(0.05, 0.8) * height
                scale = 1.0 if kind == "dot" else rng.uniform(0.2, 0.6)
                pr = rng.uniform(0.0015, 0.008) * short * scale
                colour = rng.uniform([200, 220, 230], [255, 255, 255])
                _add_disk(image, px, py, pr, colour, glow=rng.uniform(40, 250), spread=rng.uniform(1.5, 5))
                if kind == "dot":
                    info["dot"] = (float(px), float(py), float(pr))
            if rng.random() < 0.5:
                _add_horizon(image, rng, "trees" if rng.random() < 0.5 else "roofs", rng.uniform(0.06, 0.25))
        elif kind in ("lamps", "lamp"):
            _add_horizon(image, rng, "trees" if rng.random() < 0.5 else "roofs", rng.uniform(0.1, 0.3))
            count = 1 if kind == "lamp" else int(rng.integers(2, 7))
            big = rng.uniform(0.02, 0.06) if kind == "lamp" else rng.uniform(0.004, 0.025)
            warm = rng.random() < 0.6
            for i in range(count):
                lx, ly = rng.uniform(0.05, 0.95) * width, rng.uniform(0.4, 0.85) * height
                r = big * short * rng.uniform(0.7, 1.3)
                cv2.line(image, (int(lx), int(ly)), (int(lx), height), (5.0, 5.0, 5.0), max(1, int(r * 0.3)))
                colour = (150, 220, 255) if warm else (255, 255, 250)
                # Exposed for the night, a lamp is blown out in its own glare.
                glare = rng.uniform(250, 500) if kind == "lamp" else rng.uniform(150, 400)
                _add_disk(image, lx, ly, r, colour, glow=glare, spread=rng.uniform(1.5, 4))
        elif kind == "horizon":
            _add_horizon(image, rng, "roofs", rng.uniform(0.15, 0.35))
            _add_horizon(image, rng, "trees", rng.uniform(0.1, 0.25))
        else:
            raise ValueError(f"unknown kind of phone photo: {kind}")
    return _finish_fast(image, rng, noise, jpeg), info


def _finish_fast(image, rng, noise, jpeg):
    """Noise, clipping and JPEG for a large float image, with OpenCV's
    generators (NumPy's take seconds at 12 Mpx). The seed comes from ``rng``."""
    if noise:
        cv2.setRNGSeed(int(rng.integers(1 << 31)))
        grain = np.empty(image.shape, np.float32)
        cv2.randn(grain, 0.0, float(noise))
        image += grain
    image = np.clip(image, 0, 255).astype(np.uint8)
    if jpeg:
        image = cv2.imdecode(np.frombuffer(encode(image, ".jpg", jpeg), np.uint8), cv2.IMREAD_COLOR)
    return image


def _sky(width, height, colour, gradient):
    ramp = 1.0 + gradient * np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    return np.broadcast_to(np.float32(colour)[None, None, :] * ramp, (height, width, 3)).copy()


def _finish(image, rng, noise, jpeg):
    if noise:
        image = image + rng.normal(0.0, noise, image.shape).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    if jpeg is not None:
        image = cv2.imdecode(np.frombuffer(encode(image, ".jpg", jpeg), np.uint8), cv2.IMREAD_COLOR)
    return image


# --- Photo against render: globes rendered from lunar maps. ----------------
#
# A render is a shaded mosaic, a photo of the full Moon shows albedo, and
# their librations differ by a few degrees: no planar warp of one image
# makes the other. These scenes render both sides from equirectangular
# lunar maps (longitude -180..180 across, latitude 90..-90 down) as an
# orthographic globe, and take the truth from the sphere itself: points of
# the photo's inner disk are lifted onto the globe, projected in the
# model's view, and a homography is fitted to those exact pairs.

__all__ += [
    "GlobeView",
    "render_globe",
    "globe_correspondences",
    "globe_truth",
    "make_lunar_maps",
    "make_photo_render_pair",
    "make_photo_render_set",
    "make_globe_phone_photo",
    "disk_error",
    "to_rgba_render",
    "GlobePair",
]


class GlobeView:
    """Where a globe is seen from: the sub-observer point (``lon``, ``lat``
    in degrees, i.e. the libration), the position angle ``pa`` (degrees the
    image is turned about the line of sight) and the disk (``x``, ``y``,
    ``radius``) in image pixels."""

    def __init__(self, lon, lat, pa, x, y, radius):
        self.lon, self.lat, self.pa = float(lon), float(lat), float(pa)
        self.x, self.y, self.radius = float(x), float(y), float(radius)

    def rotation(self):
        """3x3 taking body-frame vectors to view coordinates (right, up,
        towards the observer)."""
        lon, lat, pa = np.radians([self.lon, self.lat, self.pa])
        towards = np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
        east = np.array([-np.sin(lon), np.cos(lon), 0.0])
        north = np.cross(towards, east)
        turn = np.array([[np.cos(pa), -np.sin(pa), 0.0], [np.sin(pa), np.cos(pa), 0.0], [0.0, 0.0, 1.0]])
        return turn @ np.vstack([east, north, towards])

    def moved(self, **changes):
        values = {k: getattr(self, k) for k in ("lon", "lat", "pa", "x", "y", "radius")}
        values.update(changes)
        return GlobeView(**values)

    def as_dict(self):
        return {k: round(getattr(self, k), 3) for k in ("lon", "lat", "pa", "x", "y", "radius")}


def _map(homography, points):
    points = np.asarray(points, np.float64).reshape(-1, 1, 2)
    return cv2.perspectiveTransform(points, np.asarray(homography, np.float64)).reshape(-1, 2)


def _lift(view, xs, ys):
    """Image pixels to body-frame unit vectors (NaN off the disk)."""
    X = (np.asarray(xs, np.float64) - view.x) / view.radius
    Y = -(np.asarray(ys, np.float64) - view.y) / view.radius
    Z = np.sqrt(np.where(X * X + Y * Y <= 1.0, 1.0 - X * X - Y * Y, np.nan))
    return np.stack([X, Y, Z], axis=-1) @ view.rotation()


def _sun_in_view(sun):
    """The unit vector towards the Sun, (phase, direction in the image) in
    degrees, in view coordinates (right, up, towards the observer)."""
    phase, direction = np.radians(sun)
    return np.array([np.sin(phase) * np.cos(direction), np.sin(phase) * np.sin(direction), np.cos(phase)])


def render_globe(lunar_map, size, view, *, sun=None, shading="lambert", supersample=None):
    """Render ``lunar_map`` (H x W x 3 or H x W, any dtype) as an orthographic
    globe seen from ``view`` on a ``size`` = (width, height) canvas.

    ``sun`` is (phase angle, direction in the image in degrees) or None for
    a full Moon. ``shading`` "lambert" darkens towards the terminator and the
    limb, as a renderer does; "lommel" (Lommel-Seeliger) stays nearly flat at
    full Moon, as the real Moon does. Returns (float32 BGR image in 0..1 of
    the map's scale, float32 coverage of the disk in 0..1).
    """
    width, height = size
    texture = lunar_map.astype(np.float32)
    if texture.ndim == 2:
        texture = cv2.cvtColor(texture, cv2.COLOR_GRAY2BGR)
    texture /= max(1.0, float(np.percentile(texture, 99.5)))
    image = np.zeros((height, width, 3), np.float32)
    coverage = np.zeros((height, width), np.float32)
    x1, x2 = max(0, int(np.floor(view.x - view.radius - 2))), min(width, int(np.ceil(view.x + view.radius + 3)))
    y1, y2 = max(0, int(np.floor(view.y - view.radius - 2))), min(height, int(np.ceil(view.y + view.radius + 3)))
    if x1 >= x2 or y1 >= y2:
        return image, coverage
    ys, xs = np.mgrid[y1:y2, x1:x2].astype(np.float64)
    distance = np.hypot(xs - view.x, ys - view.y)
    coverage[y1:y2, x1:x2] = np.clip(view.radius + 0.5 - distance, 0, 1)
    # Sample just inside the limb so the edge pixels have texture, not NaN.
    shrink = np.minimum(1.0, (view.radius - 0.5) / np.maximum(distance, 1e-9))
    points = _lift(view, view.x + (xs - view.x) * shrink, view.y + (ys - view.y) * shrink)
    points = np.nan_to_num(points)
    lon = np.degrees(np.arctan2(points[..., 1], points[..., 0]))
    lat = np.degrees(np.arcsin(np.clip(points[..., 2], -1, 1)))
    map_h, map_w = texture.shape[:2]
    map_x = ((lon + 180.0) / 360.0 * map_w - 0.5).astype(np.float32)
    map_y = ((90.0 - lat) / 180.0 * map_h - 0.5).astype(np.float32)
    # A map much finer than the render is pre-shrunk to stop aliasing.
    pixels_per_radian = map_w / (2 * np.pi)
    factor = view.radius / pixels_per_radian
    if factor < 0.7:
        small = cv2.resize(texture, None, fx=factor / 0.7, fy=factor / 0.7, interpolation=cv2.INTER_AREA)
        map_x = (map_x + 0.5) * small.shape[1] / map_w - 0.5
        map_y = (map_y + 0.5) * small.shape[0] / map_h - 0.5
        texture = small
    sampled = cv2.remap(texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    towards = view.rotation()[2]
    mu = np.clip(points @ towards, 0, 1)
    sun_vector = towards if sun is None else _sun_in_view(sun) @ view.rotation()
    mu0 = points @ sun_vector
    if shading == "lambert":
        # A soft terminator (the renderer's smooth shading), limb darkening.
        light = np.clip(mu0 + 0.04, 0, None) / 1.04
        light = light**0.8
    elif shading == "lommel":
        light = 2.0 * np.clip(mu0, 0, None) / (np.clip(mu0, 0, None) + mu + 1e-6)
        light = np.clip(light, 0, 1.2)
    else:
        raise ValueError(f"unknown shading: {shading}")
    image[y1:y2, x1:x2] = sampled * (light * coverage[y1:y2, x1:x2])[..., None].astype(np.float32)
    return image, coverage


def globe_correspondences(points, user_view, model_view):
    """Map (N, 2) user-image pixels through the sphere into the model view's
    pixels. Returns (mapped points, mask of those on both visible disks)."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    body = _lift(user_view, points[:, 0], points[:, 1])
    seen = body @ model_view.rotation().T
    visible = np.isfinite(seen).all(axis=1) & (np.nan_to_num(seen[:, 2]) > 0)
    mapped = np.column_stack(
        [model_view.x + model_view.radius * seen[:, 0], model_view.y - model_view.radius * seen[:, 1]]
    )
    return mapped, visible


def _disk_grid(x, y, radius, fraction, count=25):
    steps = np.linspace(-fraction, fraction, count)
    gx, gy = np.meshgrid(steps, steps)
    keep = gx * gx + gy * gy <= fraction * fraction
    return np.column_stack([x + radius * gx[keep], y + radius * gy[keep]])


def globe_truth(user_view, model_view, model_size, user_size, *, fraction=0.9):
    """The homography (user pixels -> pixels of the model fitted to the user
    image) fitted by least squares to exact sphere correspondences over the
    inner ``fraction`` of the user's disk, and its RMS residual in fitted
    model pixels (what no homography can absorb of the libration)."""
    points = _disk_grid(user_view.x, user_view.y, user_view.radius, fraction, 41)
    mapped, visible = globe_correspondences(points, user_view, model_view)
    fit_w, fit_h = fitted_size(model_size[0], model_size[1], user_size[0], user_size[1])
    mapped = mapped * [fit_w / model_size[0], fit_h / model_size[1]]
    homography, _ = cv2.findHomography(points[visible].astype(np.float64), mapped[visible].astype(np.float64), 0)
    residual = np.hypot(*(_map(homography, points[visible]) - mapped[visible]).T)
    return homography / homography[2, 2], float(np.sqrt(np.mean(residual**2)))


def disk_error(homography, truth, circle, *, frame=None, fraction=0.9):
    """Mean distance between the points of the inner ``fraction`` of the
    disk ``circle`` = (x, y, radius) mapped by ``homography`` and by
    ``truth``; with ``frame`` = (width, height) only points inside the
    image count (a crop can cut the disk)."""
    points = _disk_grid(*circle, fraction)
    if frame is not None:
        inside = (points[:, 0] >= 0) & (points[:, 1] >= 0) & (points[:, 0] < frame[0]) & (points[:, 1] < frame[1])
        points = points[inside]
    diff = _map(homography, points) - _map(truth, points)
    error = float(np.mean(np.hypot(diff[:, 0], diff[:, 1])))
    return error if np.isfinite(error) else float("inf")


def to_rgba_render(model):
    """A BGR render as the client posts it: 4 channels, the black sky
    transparent."""
    alpha = (model.max(axis=2) > 0).astype(np.uint8) * 255
    return np.dstack([model, alpha])


def make_lunar_maps(seed=0, size=(720, 360)):
    """Two generated equirectangular maps of one made-up moon: (render-like
    map, albedo map), for tests without ../shared. The render-like map is
    albedo under a low-sun relief shading with the maria muted; the albedo
    map has no relief, stronger maria and bright ray craters, and another
    tone curve: the two differ as a mosaic and a full-Moon photo do. Both
    are stretched to a real map's tone (see _match_tone)."""
    rng = np.random.default_rng(seed)
    width, height = size
    lon = (np.arange(width) + 0.5) / width * 2 * np.pi - np.pi
    lat = np.pi / 2 - (np.arange(height) + 0.5) / height * np.pi
    # Maria: broad dark patches, smooth noise blurred on the sphere's grid.
    albedo = np.full((height, width), 0.7, np.float32)
    lon_grid, lat_grid = np.meshgrid(lon, lat)
    xyz = np.stack([np.cos(lat_grid) * np.cos(lon_grid), np.cos(lat_grid) * np.sin(lon_grid), np.sin(lat_grid)], -1)
    for _ in range(12):
        centre = rng.normal(size=3)
        centre /= np.linalg.norm(centre)
        angle = np.arccos(np.clip(xyz @ centre, -1, 1))
        albedo -= 0.3 * np.exp(-((angle / rng.uniform(0.12, 0.4)) ** 2)).astype(np.float32)
    relief = np.zeros_like(albedo)
    rays = np.zeros_like(albedo)
    rims = np.zeros_like(albedo)
    step = 2 * np.pi / width
    for k in range(900):
        # Craters: bowls with raised rims, drawn in a patch around each.
        c_lon, c_lat = rng.uniform(-np.pi, np.pi), np.arcsin(rng.uniform(-0.95, 0.95))
        size_rad = 0.006 + 0.012 * min(rng.pareto(1.5), 6.0)
        reach = 2.0 * size_rad if k >= 30 else 8.0 * size_rad
        rows = np.arange(max(0, int((np.pi / 2 - c_lat - reach) / step)), min(height, int((np.pi / 2 - c_lat + reach) / step) + 1))
        half = int(reach / max(np.cos(c_lat) * step, 1e-3)) + 1
        cols = np.arange(int((c_lon + np.pi) / step) - half, int((c_lon + np.pi) / step) + half + 1) % width
        d_lon = ((lon[cols][None, :] - c_lon + np.pi) % (2 * np.pi) - np.pi) * np.cos(lat[rows])[:, None]
        d_lat = (lat[rows] - c_lat)[:, None] * np.ones_like(d_lon)
        d = np.hypot(d_lon, d_lat) / size_rad
        patch = np.ix_(rows, cols)
        relief[patch] += ((np.where(d < 1, d * d - 1, 0) + 0.35 * np.exp(-((d - 1) ** 2) / 0.05)) * size_rad * 40).astype(np.float32)
        # Fresh rims are bright and floors a little dark in albedo too.
        rims[patch] += (rng.uniform(0.05, 0.25) * np.exp(-((d - 1) ** 2) / 0.04) - 0.05 * (d < 0.8)).astype(np.float32)
        if k < 30:
            # The youngest craters throw bright rays.
            spokes = 0.5 + 0.5 * np.cos(int(rng.integers(5, 11)) * np.arctan2(d_lat, d_lon) + rng.uniform(0, 6.3))
            rays[patch] += (0.6 * np.exp(-d / 3.0) * spokes**3 + 0.2 * (d < 1.2)).astype(np.float32)
    mottle = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), 1.5)
    albedo = albedo + 0.05 * mottle / (np.abs(mottle).max() + 1e-6)
    # Highlands vary broadly too (ejecta blankets, older maria-like plains).
    broad = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), width / 60.0)
    albedo = albedo + 0.08 * broad / (broad.std() + 1e-6)
    gy, gx = np.gradient(cv2.GaussianBlur(relief, (0, 0), 0.7))
    shade = 0.6 + 0.4 * np.tanh(2.0 * (gx - 0.4 * gy))
    render_map = (0.25 + 0.75 * (albedo + 0.5 * rims)) * shade
    albedo_map = np.clip(albedo + rims + 0.5 * rays, 0, None) ** 1.4
    weight = np.broadcast_to(np.cos(lat)[:, None], albedo.shape)
    render_map = _match_tone(render_map, weight)
    albedo_map = _match_tone(albedo_map, weight)
    as_bgr = lambda m: cv2.cvtColor((m * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)  # noqa: E731
    return as_bgr(render_map), as_bgr(albedo_map)


# Real lunar maps have their median level at about half of their 98th
# percentile's (moon-2k.jpg 0.47, ldam_10.png 0.58, area-weighted over the
# near side). Maps made in code were flat, their medians at 0.71-0.75, so
# the phone photos' exposure, set on the brightest 2% of the disk, blew out
# most of their disks where it leaves real ones' maria. A linear stretch
# sets the median; histogram specification to the real maps' whole curve
# would stretch the flat highlands' faint mottle fivefold into a texture
# both maps share, which real maps do not.
_TONE_MEDIAN = 0.55


def _match_tone(values, weight, median=_TONE_MEDIAN):
    """``values`` stretched linearly so that their ``weight``-weighted
    median is ``median`` of their 98th percentile, the latter at 1; levels
    under 0.02 (the darkest maria) are held at 0.02, above 1 at 1."""
    order = np.argsort(values, axis=None)
    cumulative = np.cumsum(weight.ravel()[order], dtype=np.float64)
    cumulative /= cumulative[-1]
    p50, p98 = np.interp([0.5, 0.98], cumulative, values.ravel()[order])
    floor = (p50 - median * p98) / (1.0 - median)
    return np.clip((values - floor) / max(p98 - floor, 1e-6), 0.02, 1.0).astype(np.float32)


class GlobePair(BenchmarkPair):
    """A photo-against-render pair from lunar maps. ``user_circle`` is the
    photo's disk (x, y, radius) in its own pixels; ``model_circle`` the
    model's in the fitted model's pixels; ``residual`` what the best
    homography cannot absorb of the libration (fitted model pixels)."""

    def __init__(self, user, model, expected, params, user_circle, model_circle, residual):
        super().__init__(user, model, expected, None, params)
        self.user_circle, self.model_circle, self.residual = user_circle, model_circle, residual


def _model_render(lunar_map, rng, size=2000, phase=None):
    radius = size * rng.uniform(0.43, 0.495)
    view = GlobeView(rng.uniform(-7, 7), rng.uniform(-6.5, 6.5), rng.uniform(-25, 25), size / 2.0, size / 2.0, radius)
    sun = (float(rng.uniform(0, 40)), float(rng.uniform(0, 360)))
    if phase is not None:
        sun = (float(phase), sun[1])
    image, _ = render_globe(lunar_map, (size, size), view, sun=sun, shading="lambert")
    # The client's renders are dim grey mosaics on black.
    image = np.clip(image * rng.uniform(0.7, 1.0), 0, 1)
    return (image * 255 + 0.5).astype(np.uint8), view, sun


def _plane(canvas, rng, x, y, length):
    """A dark aircraft silhouette at (x, y) of ``length`` pixels."""
    a = rng.uniform(0, np.pi)
    d = np.array([np.cos(a), np.sin(a)])
    n = np.array([-d[1], d[0]])
    body = [np.array([x, y]) + t * d * length for t in (-0.5, 0.5)]
    cv2.line(canvas, tuple(int(v) for v in body[0]), tuple(int(v) for v in body[1]), 255, max(1, int(0.1 * length)), cv2.LINE_AA)
    for s in (-1, 1):
        tip = np.array([x, y]) + 0.1 * length * d + s * 0.45 * length * n - 0.15 * length * d
        cv2.line(canvas, (int(x), int(y)), tuple(int(v) for v in tip), 255, max(1, int(0.06 * length)), cv2.LINE_AA)


def _degrade(photo, coverage, rng, params):
    """Apply ``params`` (see make_photo_render_pair) to a float BGR photo."""
    if params["cast"] is not None:
        photo = photo * np.float32(params["cast"])[None, None, :]
    height = photo.shape[0]
    row0, rows = params.get("sky_rows", (0, height))
    ramp = np.linspace(0.8, 1.2, rows, dtype=np.float32)[row0 : row0 + height, None, None]
    photo = photo + np.float32(params["sky"])[None, None, :] / 255.0 * ramp * (1.0 - coverage[..., None])
    if params["blur"] > 0:
        photo = cv2.GaussianBlur(photo, (0, 0), params["blur"])
    # Over-exposure: the sensor clips the bright highlands.
    photo = np.clip(photo * params["exposure"], 0, 1)
    photo = photo ** params["gamma"]
    shade = np.zeros(photo.shape[:2], np.uint8)
    width = photo.shape[1]
    for _ in range(params["branches"]):
        start = (rng.uniform(0, width), height * rng.uniform(0.9, 1.1))
        _branch(shade, rng, start, rng.uniform(-2.2, -0.9), 0.25 * min(width, height), 0.02 * min(width, height) + 1, 4)
    if params["plane"]:
        radius = params["radius"]
        cx, cy = params["centre"]
        _plane(shade, rng, cx + rng.uniform(-0.6, 0.6) * radius, cy + rng.uniform(-0.6, 0.6) * radius, 0.15 * radius)
    if shade.any():
        photo = photo * (1.0 - 0.95 * shade.astype(np.float32)[..., None] / 255.0)
    if params["noise"] > 0:
        photo = photo + rng.normal(0.0, params["noise"] / 255.0, photo.shape).astype(np.float32)
    photo = (np.clip(photo, 0, 1) * 255 + 0.5).astype(np.uint8)
    if params["jpeg"] is not None:
        photo = cv2.imdecode(np.frombuffer(encode(photo, ".jpg", quality=params["jpeg"]), np.uint8), cv2.IMREAD_COLOR)
    return photo


def _photo_params(rng, radius):
    return {
        "exposure": float(rng.choice([1.0, rng.uniform(1.2, 2.2)], p=[0.4, 0.6])),
        "cast": tuple(float(v) for v in rng.uniform([0.35, 0.6, 0.95], [1.05, 1.05, 1.1])) if rng.random() < 0.7 else None,
        "gamma": float(rng.uniform(0.6, 1.5)),
        # Heavy blur: up to about 1.2% of the radius (seeing, focus, shake).
        "blur": float(rng.uniform(0.5, 1.0) * max(1.0, 0.012 * radius)) if rng.random() < 0.6 else 0.0,
        "noise": float(rng.uniform(1.0, 8.0)) if rng.random() < 0.6 else 0.0,
        "jpeg": int(rng.integers(60, 96)) if rng.random() < 0.7 else None,
        "branches": int(rng.integers(1, 3)) if rng.random() < 0.2 else 0,
        "plane": bool(rng.random() < 0.15),
        "sky": tuple(float(v) for v in rng.uniform([3, 2, 0], [45, 25, 15])),
    }


def _photo_view(model_view, rng, x, y, radius):
    """A photo's view: libration up to 3 degrees off the model's, any roll."""
    offset, direction = 3.0 * np.sqrt(rng.uniform(0, 1)), rng.uniform(0, 2 * np.pi)
    return GlobeView(
        model_view.lon + offset * np.cos(direction),
        model_view.lat + offset * np.sin(direction),
        rng.uniform(0, 360),
        x,
        y,
        radius,
    )


def _crop_box(cx, cy, radius, width, height):
    """The client's crop: a square padded by ceil(0.15 r), clipped at the
    photo's border."""
    pad = int(np.ceil(0.15 * radius))
    x1, y1 = max(0, int(cx - radius - pad)), max(0, int(cy - radius - pad))
    x2, y2 = min(width, int(np.ceil(cx + radius + pad))), min(height, int(np.ceil(cy + radius + pad)))
    return x1, y1, x2, y2


def _same_sun(model_view, model_sun, view):
    """The Sun of ``model_sun`` (phase, direction in the model's image) as
    (phase, direction) in ``view``'s image: one Sun in the body's frame."""
    in_view = view.rotation() @ (_sun_in_view(model_sun) @ model_view.rotation())
    return float(np.degrees(np.arccos(np.clip(in_view[2], -1.0, 1.0)))), float(np.degrees(np.arctan2(in_view[1], in_view[0])))


def make_photo_render_pair(render_map, photo_map, seed, *, model=None, user_radius=None, clipped=None, phase=None):
    """One photo-against-render pair: the model rendered from ``render_map``
    (2000 x 2000, Lambert shading at a random phase up to 40 degrees, a
    libration up to 7 degrees), the photo from ``photo_map`` at a libration
    up to 3 degrees off the model's, rolled freely, Lommel-Seeliger shading
    near full Moon, then degraded (over-exposure, colour cast, gamma, heavy
    blur, noise, JPEG, branches, a plane) and cropped as the client crops,
    clipped at the frame's edge when ``clipped`` (by default one pair in
    four). ``model`` = (image, view, sun) reuses a model render.

    ``phase`` (degrees): the model rendered at that phase (unless given)
    and the photo lit by the same Sun, as a client's render made for the
    photo's moment is: a half Moon at 90, a crescent beyond."""
    rng = np.random.default_rng(seed)
    if model is None:
        model = _model_render(render_map, rng, phase=phase)
    model_image, model_view, model_sun = model
    radius = float(user_radius or np.exp(rng.uniform(np.log(90), np.log(700))))
    clipped = bool(rng.random() < 0.25) if clipped is None else clipped
    pad = int(np.ceil(0.15 * radius))
    # The scene around the Moon; a clipped crop has the Moon near an edge.
    scene_w = scene_h = int(2 * (radius + pad)) + 2 * int(rng.uniform(0.2, 1.0) * radius)
    cx, cy = scene_w / 2.0 + rng.uniform(-0.05, 0.05) * radius, scene_h / 2.0 + rng.uniform(-0.05, 0.05) * radius
    if clipped:
        edge = rng.uniform(0.9, 1.1) * radius
        side = int(rng.integers(4))
        if side == 0:
            cx = edge
        elif side == 1:
            cx = scene_w - edge
        elif side == 2:
            cy = edge
        else:
            cy = scene_h - edge
    x1, y1, x2, y2 = _crop_box(cx, cy, radius, scene_w, scene_h)
    view = _photo_view(model_view, rng, cx - x1, cy - y1, radius)
    sun = (float(rng.uniform(0, 8)), float(rng.uniform(0, 360)))
    if phase is not None:
        sun = _same_sun(model_view, model_sun, view)
    photo, coverage = render_globe(photo_map, (x2 - x1, y2 - y1), view, sun=sun, shading="lommel")
    params = _photo_params(rng, radius)
    params.update(radius=radius, centre=(view.x, view.y), clipped=clipped, user_size=(x2 - x1, y2 - y1))
    user = _degrade(photo, coverage, rng, params)
    model_size = (model_image.shape[1], model_image.shape[0])
    expected, residual = globe_truth(view, model_view, model_size, (x2 - x1, y2 - y1))
    fit_w, _ = fitted_size(*model_size, x2 - x1, y2 - y1)
    k = fit_w / model_size[0]
    params.update(user_view=view.as_dict(), model_view=model_view.as_dict(), model_sun=model_sun)
    return GlobePair(
        user, model_image, expected, params, (view.x, view.y, radius),
        (model_view.x * k, model_view.y * k, model_view.radius * k), residual,
    )


def make_photo_render_set(maps, n, seed=0, *, models_per_direction=2):
    """``n`` pairs from ``maps`` = [map A, map B]: half rendered from A with
    photos from B, half the other way round (so nothing is tuned to one
    map's look). Model renders are shared by several pairs, as one render
    serves many photos."""
    rng = np.random.default_rng(seed)
    directions = [(maps[0], maps[1]), (maps[1], maps[0])]
    models = [
        [_model_render(render_map, np.random.default_rng([seed, d, m])) for m in range(models_per_direction)]
        for d, (render_map, _) in enumerate(directions)
    ]
    pairs = []
    for index in range(n):
        d = index % 2
        render_map, photo_map = directions[d]
        model = models[d][int(rng.integers(models_per_direction))]
        pair = make_photo_render_pair(render_map, photo_map, [seed, index, 1], model=model)
        pair.params["direction"] = d
        pairs.append(pair)
    return pairs


def make_globe_phone_photo(photo_map, model, seed, *, source_radius=450, **options):
    """A whole phone photo (see :func:`make_phone_photo`: 4:3 or 16:9,
    portrait or landscape, 2 to 12 Mpx, planets, lamps, silhouettes, halos,
    cloud) whose Moon is a globe rendered from ``photo_map`` at a libration
    up to 3 degrees off the model's; ``model`` = (image, view, sun) as from
    make_photo_render_set's renders. ``options`` go to make_phone_photo (by
    default a phase of at most 40 degrees, as the renders have). Returns a
    GlobePair in the whole photo's pixels."""
    rng = np.random.default_rng(seed)
    model_image, model_view, _ = model
    side = 2 * source_radius + 8
    view = _photo_view(model_view, rng, side / 2.0, side / 2.0, source_radius)
    source, coverage = render_globe(photo_map, (side, side), view, sun=(float(rng.uniform(0, 8)), 0.0), shading="lommel")
    source = (np.clip(source, 0, 1) * 255 + 0.5).astype(np.uint8)
    options.setdefault("phase", float(rng.choice([0.0, rng.uniform(0, 40)])))
    options.setdefault("angle", 0.0)
    photo, (cx, cy, radius), info = make_phone_photo(
        int(rng.integers(1 << 30)), moon=source, circle=(view.x, view.y, view.radius), **options
    )
    height, width = photo.shape[:2]
    model_size = (model_image.shape[1], model_image.shape[0])
    # The truth on the source's disk, carried into the photo by the paste
    # (a similarity): user pixels -> source pixels -> sphere -> model.
    source_truth, residual = globe_truth(view, model_view, model_size, (width, height))
    expected = source_truth @ np.linalg.inv(info["moon_to_photo"])
    fit_w, _ = fitted_size(*model_size, width, height)
    k = fit_w / model_size[0]
    params = {key: value for key, value in info.items() if key not in ("moon_image", "moon_to_photo")}
    params.update(size=(width, height), user_view=view.as_dict(), model_view=model_view.as_dict())
    return GlobePair(
        photo, model_image, expected / expected[2, 2], params, (cx, cy, radius),
        (model_view.x * k, model_view.y * k, model_view.radius * k), residual,
    )
