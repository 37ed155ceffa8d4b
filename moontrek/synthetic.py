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
