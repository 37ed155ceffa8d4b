"""Synthetic Moon scenes with known answers, for tests and benchmarks.

Real photos may not be on the machine (tests must run without ../shared), and
three real pairs are too few to measure anything, so the tests and benchmarks
make their own: a cratered, shaded disk, and user "photos" made from it by a
known homography.
"""

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
