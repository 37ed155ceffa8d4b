"""Finding the Moon's disk in a photo or a model render.

The Moon is, nearly always, the brightest compact thing in its picture and a
perfect circle (a far-away sphere seen under any tilt), while what spoils a
naive detector is not: haloes and glow are soft, the terminator of a crescent
and the silhouettes of branches or clouds bite concave notches into the lit
region, and the frame's border cuts cropped photos. So the detector thresholds
a brightness image at several levels, keeps the parts of each region's outline
that lie on its convex hull (the lit limb: notches are concave, the border is
known), fits circles to them (RANSAC, a whole-limb fit for oval blurred blobs,
and the deepest inscribed circle for a Moon fused with lit cloud), lets each
circle gather the limb pieces that branches cut off, and picks the one whose
rim is the brightest, most complete step down to the sky. Craters inside a
better disk are dropped; several similar disks (coins, lamps) mean no Moon.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from .errors import NoMoonError

__all__ = ["Circle", "find_moon", "MAX_WORK_PIXELS"]

#: Detection runs on a copy at most this large; the answer is scaled back.
MAX_WORK_PIXELS = 1_000_000

_NO_MOON = "No Moon was found in the image."

# Fractions of the way from the sky's level to the brightest pixel. Several
# levels because no single one works: a halo needs a high one to keep the
# core apart, a dim limb or a dark-shaded render a low one.
_LEVELS = (0.12, 0.22, 0.35, 0.5, 0.65, 0.8, 0.92)
_MAX_REGIONS_PER_LEVEL = 8
_MIN_RADIUS = 3.0  # working pixels: below this a "disk" is a star or noise
_MIN_RANGE = 24.0  # grey levels between sky and brightest: less is a blank frame
_RANSAC_TRIALS = 160
_ANGLE_BINS = 72
_MIN_SCORE = 0.01  # below this no candidate is a Moon
_MIN_CONTRAST = 20.0  # grey levels between the disk and the ring around it
_MIN_RADIUS_FOUND = 4.5  # working pixels
_RIVAL_SHARE = 0.2  # a look-alike scores at least this share of the best
_CONTAINER_SHARE = 0.5  # a disk drops the features inside it from this share


@dataclass(frozen=True)
class Circle:
    """A disk in pixel coordinates: centre (x, y) and radius."""

    x: float
    y: float
    radius: float

    def as_dict(self):
        return {"x": round(float(self.x), 1), "y": round(float(self.y), 1), "radius": round(float(self.radius), 1)}

    def scaled(self, factor):
        return Circle(self.x * factor, self.y * factor, self.radius * factor)


@dataclass
class _Candidate:
    x: float
    y: float
    r: float
    coverage: float  # fraction of the full circle that the fitted limb covers
    step: float  # mean drop across the rim, all the way round, 0 to 1 of the range
    inside: float  # brightness just inside the lit limb
    outside: float  # brightness of the ring around the disk
    level: float  # the threshold that made it
    support: float  # fraction of the region's hull points near the circle
    bright: float  # brightness inside the limb, 0 at the sky, 1 at the brightest
    noise: float = 0.0  # the image's noise level, in grey levels
    score: float = 0.0


def find_moon(image):
    """The Moon's disk in a BGR or grey uint8 image, in that image's pixels.

    Raises NoMoonError when nothing in the picture is convincingly the Moon.
    """
    if image is None or image.size == 0 or min(image.shape[:2]) < 8:
        raise NoMoonError(_NO_MOON)
    grey = _brightness(image)
    height, width = grey.shape
    factor = min(1.0, (MAX_WORK_PIXELS / float(height * width)) ** 0.5)
    if factor < 1.0:
        size = (max(8, round(width * factor)), max(8, round(height * factor)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        factor = grey.shape[1] / float(width)
    candidates = _candidates(grey)
    best = _choose(candidates)
    if best is None:
        raise NoMoonError(_NO_MOON)
    # Pixel centres: (x + 0.5) / factor - 0.5 maps work to original pixels.
    return Circle((best.x + 0.5) / factor - 0.5, (best.y + 0.5) / factor - 0.5, best.r / factor)


def _brightness(image):
    # Luminance, not a single channel: an orange Moon on a blue sky is bright
    # in red and green but dark in blue, and a blue sky is bright in blue.
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        image = image[:, :, :3]
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def _candidates(grey):
    """Every plausible disk at every threshold level, with its measurements."""
    height, width = grey.shape
    smooth = cv2.GaussianBlur(grey, (0, 0), 1.0)
    sky = float(np.percentile(smooth[::4, ::4], 5))
    top = float(smooth.max())
    if top - sky < _MIN_RANGE:
        return []
    smooth_f = smooth.astype(np.float32)
    # Sensor noise, from differences of raw neighbours (robust: the Moon's
    # edge is a tiny fraction of them), then as much as survives the blur.
    raw = grey[::2].astype(np.float32)
    noise = 1.4826 * float(np.median(np.abs(np.diff(raw, axis=1)))) / np.sqrt(2.0) / (2.0 * np.sqrt(np.pi))
    levels = sorted({sky + f * (top - sky) for f in _LEVELS})
    found = []
    boxes = []
    for level in levels:
        mask = (smooth > level).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        if not contours:
            continue
        areas = np.array([cv2.contourArea(c) for c in contours])
        order = np.argsort(-areas)[:_MAX_REGIONS_PER_LEVEL]
        if areas[order[0]] < np.pi * _MIN_RADIUS**2:
            continue
        # Every outline at this level, for pieces of one disk cut apart by
        # branches or cloud: a circle fitted to one piece collects the rest.
        edge = np.concatenate([c.reshape(-1, 2)[:: max(1, len(c) // 400)] for c in contours]).astype(np.float64)
        edge = edge[_off_border(edge, width, height)]
        for index in order:
            if areas[index] < np.pi * _MIN_RADIUS**2:
                break
            outline = contours[index].reshape(-1, 2)
            bx, by, bw, bh = cv2.boundingRect(outline)
            # The same object at a neighbouring level: nothing new to fit.
            box = np.array([bx, by, bx + bw, by + bh])
            if any(np.abs(box - seen).max() <= max(1, 0.02 * max(bw, bh)) for seen in boxes):
                continue
            boxes.append(box)
            region = np.zeros((bh + 2, bw + 2), np.uint8)
            cv2.drawContours(region, [outline - (bx - 1, by - 1)], -1, 1, thickness=-1)
            found.extend(
                _fit_region(outline, region, (bx - 1, by - 1), edge, smooth_f, level, sky, top - sky, width, height)
            )
    for candidate in found:
        candidate.noise = noise
    return found


def _limb_points(outline, width, height):
    """Points of a region's outline on its convex hull and off the frame's border."""
    step = max(1, len(outline) // 480)
    points = outline[::step].astype(np.float64)
    on_border = ~_off_border(points, width, height)
    hull = cv2.convexHull(outline.astype(np.int32)).reshape(-1, 2).astype(np.float64)
    if len(hull) < 3:
        return points[~on_border], points
    extent = float(np.ptp(hull, axis=0).max())
    tolerance = max(1.0, 0.02 * extent)
    start, end = hull, np.roll(hull, -1, axis=0)
    seg = end - start
    seg_len2 = np.maximum((seg**2).sum(axis=1), 1e-9)
    rel = points[:, None, :] - start[None, :, :]
    t = np.clip((rel * seg[None]).sum(axis=2) / seg_len2[None], 0.0, 1.0)
    nearest = start[None] + t[..., None] * seg[None]
    distance = np.sqrt(((points[:, None, :] - nearest) ** 2).sum(axis=2)).min(axis=1)
    keep = (distance <= tolerance) & ~on_border
    return points[keep], points


def _circle_through(a, b, c):
    """Circles through triples of points (vectorised); NaN where collinear."""
    ax, ay = a[:, 0], a[:, 1]
    bx, by = b[:, 0], b[:, 1]
    cx, cy = c[:, 0], c[:, 1]
    d = 2.0 * (ax * (by - cy) + bx * (cy - ay) + cx * (ay - by))
    with np.errstate(divide="ignore", invalid="ignore"):
        a2, b2, c2 = ax * ax + ay * ay, bx * bx + by * by, cx * cx + cy * cy
        ux = (a2 * (by - cy) + b2 * (cy - ay) + c2 * (ay - by)) / d
        uy = (a2 * (cx - bx) + b2 * (ax - cx) + c2 * (bx - ax)) / d
    r = np.hypot(ax - ux, ay - uy)
    return ux, uy, r


def _refine(points, x, y, r, iterations=6):
    """Geometric least-squares circle (Gauss-Newton): unbiased on short arcs,
    unlike the algebraic fit, which matters for crescents."""
    px, py = points[:, 0], points[:, 1]
    for _ in range(iterations):
        dx, dy = px - x, py - y
        dist = np.maximum(np.hypot(dx, dy), 1e-9)
        ux, uy = dx / dist, dy / dist
        residual = dist - r
        # Normal equations of J = [-ux, -uy, -1], solved in closed form.
        jtj = np.array(
            [
                [np.dot(ux, ux), np.dot(ux, uy), ux.sum()],
                [np.dot(ux, uy), np.dot(uy, uy), uy.sum()],
                [ux.sum(), uy.sum(), float(len(px))],
            ]
        )
        jtr = np.array([np.dot(ux, residual), np.dot(uy, residual), residual.sum()])
        try:
            delta = np.linalg.solve(jtj, jtr)
        except np.linalg.LinAlgError:
            break
        x, y, r = x + delta[0], y + delta[1], r + delta[2]
        if np.abs(delta).max() < 1e-2:
            break
    return x, y, abs(r)


def _ransac(points, max_radius):
    """The circle most hull points agree on, refined on its inliers. A fixed
    seed keeps the detector deterministic."""
    rng = np.random.default_rng(12345)
    n = len(points)
    trials = rng.integers(0, n, size=(_RANSAC_TRIALS, 3))
    ux, uy, r = _circle_through(points[trials[:, 0]], points[trials[:, 1]], points[trials[:, 2]])
    ok = np.isfinite(r) & (r >= _MIN_RADIUS) & (r <= max_radius)
    if not ok.any():
        return None
    ux, uy, r = ux[ok], uy[ok], r[ok]
    dist = np.hypot(points[None, :, 0] - ux[:, None], points[None, :, 1] - uy[:, None])
    tol = np.maximum(1.0, 0.025 * r)[:, None]
    inliers = np.abs(dist - r[:, None]) <= tol
    best = int(np.argmax(inliers.sum(axis=1)))
    x, y, rad = ux[best], uy[best], r[best]
    mask = inliers[best]
    for _ in range(3):
        if mask.sum() < 5:
            return None
        x, y, rad = _refine(points[mask], x, y, rad)
        if not (np.isfinite(rad) and _MIN_RADIUS <= rad <= max_radius):
            return None
        dist = np.hypot(points[:, 0] - x, points[:, 1] - y)
        mask = np.abs(dist - rad) <= max(1.0, 0.025 * rad)
    return x, y, rad, mask


def _sample(image, xs, ys):
    """Bilinear samples of a float image at points; NaN outside the frame."""
    height, width = image.shape
    valid = (xs >= 0) & (ys >= 0) & (xs <= width - 1) & (ys <= height - 1)
    out = np.full(xs.shape, np.nan, np.float32)
    if valid.any():
        values = cv2.remap(
            image,
            xs[valid].astype(np.float32).reshape(1, -1),
            ys[valid].astype(np.float32).reshape(1, -1),
            cv2.INTER_LINEAR,
        )
        out[valid] = values.ravel()
    return out


def _fit_region(outline, region_mask, origin, edge, smooth, level, sky, span, width, height):
    """Candidate disks for one thresholded region."""
    limb, all_points = _limb_points(outline, width, height)
    max_radius = 0.75 * max(width, height)
    fits = []
    if len(limb) >= 8:
        fit = _ransac(limb, max_radius)
        if fit is not None:
            fits.append(fit[:3])
        # A blurred or shaken Moon is an oval blob, on which the tight fit
        # locks onto one arc; a fit over the whole limb follows the blob.
        fits.append(_refine(limb, *_kasa(limb)))
    # A Moon behind thin cloud merges with the lit cloud around it; the
    # deepest point of the region, and the outline around it, is the disk.
    dist = cv2.distanceTransform(region_mask, cv2.DIST_L2, 5)
    _, depth, _, (px, py) = cv2.minMaxLoc(dist)
    if depth >= _MIN_RADIUS:
        x, y, r = px + origin[0], py + origin[1], depth
        for _ in range(2):
            d = np.hypot(all_points[:, 0] - x, all_points[:, 1] - y)
            near = (np.abs(d - r) <= 0.3 * r) & _off_border(all_points, width, height)
            if near.sum() < 8:
                break
            x, y, r = _refine(all_points[near], x, y, r)
        fits.append((x, y, r))
    out = []
    for x, y, r in fits:
        if not (np.isfinite(r) and _MIN_RADIUS <= r <= max_radius):
            continue
        if any(abs(r - c.r) < 0.03 * r and np.hypot(x - c.x, y - c.y) < 0.03 * r for c in out):
            continue
        x, y, r, arc = _collect(x, y, r, edge, smooth, level, max_radius)
        if arc is None:
            continue
        candidate = _evaluate(x, y, r, limb, arc, smooth, level, sky, span, width, height)
        if candidate is not None:
            out.append(candidate)
    return out


def _collect(x, y, r, edge, smooth, level, max_radius):
    """Refit a circle on every outline point of its level that lies on it
    with the bright side inwards; those points are the visible limb."""
    arc = None
    for _ in range(2):
        dist = np.hypot(edge[:, 0] - x, edge[:, 1] - y)
        near = np.abs(dist - r) <= max(1.5, 0.08 * r)
        if near.sum() < 6:
            return x, y, r, arc
        points, d = edge[near], dist[near][:, None]
        unit = (points - (x, y)) / np.maximum(d, 1e-9)
        probe = max(1.5, 0.05 * r)
        inner = points - probe * unit
        outer = points + probe * unit
        ins = _sample(smooth, inner[:, 0], inner[:, 1])
        out = _sample(smooth, outer[:, 0], outer[:, 1])
        # Outside the frame counts as dark: a limb cut by the border is fine.
        limb = (ins > level) & ~(out > level)
        if limb.sum() < 6:
            return x, y, r, arc
        arc = points[limb]
        nx, ny, nr = _refine(arc, x, y, r)
        if not (np.isfinite(nr) and _MIN_RADIUS <= nr <= max_radius) or np.hypot(nx - x, ny - y) > 0.3 * r:
            return x, y, r, arc
        x, y, r = nx, ny, nr
    return x, y, r, arc


def _off_border(points, width, height):
    return (points[:, 0] > 1) & (points[:, 1] > 1) & (points[:, 0] < width - 2) & (points[:, 1] < height - 2)


def _kasa(points):
    """Algebraic circle fit: a fine start for the geometric one."""
    x, y = points[:, 0], points[:, 1]
    a = np.column_stack((x, y, np.ones_like(x)))
    (p, q, c), *_ = np.linalg.lstsq(a, x * x + y * y, rcond=None)
    cx, cy = p / 2.0, q / 2.0
    return cx, cy, float(np.sqrt(max(c + cx * cx + cy * cy, 0.0)))


def _evaluate(x, y, r, limb, arc, smooth, level, sky, span, width, height):
    # A Moon cut by the frame still shows its centre; a circle centred off the
    # frame is a guess from a short arc of some other edge.
    if not (0 <= x < width and 0 <= y < height):
        return None
    if len(limb) < 5:
        return None
    dist = np.hypot(limb[:, 0] - x, limb[:, 1] - y)
    near = np.abs(dist - r) <= max(1.5, 0.15 * r)
    support = float(near.mean())
    arc_dist = np.hypot(arc[:, 0] - x, arc[:, 1] - y)
    arc = arc[np.abs(arc_dist - r) <= max(1.5, 0.08 * r)]
    angles = np.arctan2(arc[:, 1] - y, arc[:, 0] - x)
    bins = np.unique(((angles + np.pi) / (2 * np.pi) * _ANGLE_BINS).astype(int) % _ANGLE_BINS)
    coverage = len(bins) / _ANGLE_BINS

    # The step across the circle, all the way round: a soft halo edge or an
    # arc fitted to one side of something else steps down weakly or rarely.
    theta = (np.arange(_ANGLE_BINS) + 0.5) / _ANGLE_BINS * 2 * np.pi - np.pi
    delta = max(1.5, 0.12 * r)
    cos, sin = np.cos(theta), np.sin(theta)
    inner = _sample(smooth, x + (r - delta) * cos, y + (r - delta) * sin)
    outer = _sample(smooth, x + (r + delta) * cos, y + (r + delta) * sin)
    known = np.isfinite(inner) & np.isfinite(outer)
    if known.sum() < 8:
        return None
    steps = (inner[known] - outer[known]) / span
    step = float(np.clip(steps, 0, 1).sum() / max(known.sum(), _ANGLE_BINS // 2))
    # Brightness where the limb is lit: a crescent is dark on most of its rim.
    lit = steps > 0.1
    inside = float(np.median(inner[known][lit])) if lit.any() else sky
    ring_theta = np.linspace(-np.pi, np.pi, 48, endpoint=False)
    ring = []
    for factor in (1.3, 1.6):
        ring.append(_sample(smooth, x + factor * r * np.cos(ring_theta), y + factor * r * np.sin(ring_theta)))
    ring = np.concatenate(ring)
    ring = ring[np.isfinite(ring)]
    # A disk filling the frame has no ring in it: its rim's outer side is all
    # there is of the sky.
    outside = float(np.median(ring)) if len(ring) > 8 else float(np.median(outer[known]))
    bright = (inside - sky) / span
    return _Candidate(x, y, r, coverage, step, inside, outside, level, support, bright)


def _drop_surface_features(candidates):
    """Craters and bright rays are small circles inside the disk that may
    score above it; a glow is a circle round the disk, centred on it. So a
    circle inside a fair rival is dropped unless it sits at that rival's
    centre and is not much smaller (the disk inside its halo). A rival that
    is only an arc (coverage under 0.4, or no more than the inner circle's)
    is no disk to contain anything."""
    kept = []
    for a in candidates:
        feature = False
        for b in candidates:
            if b is a or b.r <= a.r or b.score < _CONTAINER_SHARE * a.score or b.coverage < max(0.4, a.coverage + 0.05):
                continue
            offset = np.hypot(a.x - b.x, a.y - b.y)
            if offset + a.r > 1.15 * b.r:
                continue
            if offset > 0.25 * b.r or a.r < 0.25 * b.r:
                feature = True
                break
        if not feature:
            kept.append(a)
    return kept or candidates


def _choose(candidates):
    """The Moon among the candidates, or None."""
    if not candidates:
        return None
    for c in candidates:
        c.score = c.step * c.bright**2 * c.coverage * c.support
        # Blobs of noise are round too; the Moon stands far above the noise.
        if c.inside - c.outside < max(_MIN_CONTRAST, 6.0 * c.noise) or c.r < _MIN_RADIUS_FOUND:
            c.score = 0.0
    candidates.sort(key=lambda c: -c.score)
    everything = candidates
    candidates = _drop_surface_features(candidates)
    best = candidates[0]
    if best.score < _MIN_SCORE:
        return None
    # The Moon has no look-alikes: several disks of its size, each nearly as
    # convincing, are coins, lamps or bubbles.
    rivals = []
    for c in everything:
        if c is best or c.score < _RIVAL_SHARE * best.score or not (0.6 < c.r / best.r < 1.67):
            continue
        if any(np.hypot(c.x - o.x, c.y - o.y) < o.r + c.r for o in [best] + rivals):
            continue
        rivals.append(c)
    if len(rivals) >= 2:
        return None
    return best
