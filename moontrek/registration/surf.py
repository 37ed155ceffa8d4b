"""SURF keypoints and descriptors, computed the way OpenCV's non-free build does.

PyPI's OpenCV wheels leave SURF out (``cv2.xfeatures2d.SURF_create`` raises), so
the engine carries its own implementation, written from the algorithm
description in ``SURF.md`` (Bay et al. 2008 as OpenCV implements it).  The
class mimics an OpenCV ``Feature2D`` (``detect``, ``compute``,
``detectAndCompute``, ``descriptorSize``, ...), so a registration pipeline can
use it wherever it would use ``cv2.SIFT_create()``.

Choices worth knowing:

* atan2: OpenCV's polynomial approximation (``cv::fastAtan2``: coefficients
  0.9997878, -0.3258084, 0.1555787, -0.0443266 on min/max of ``|x|, |y|``),
  evaluated in float32, both for the sample angles of the orientation search
  and for the final keypoint angle.  NumPy's exact ``arctan2`` would move
  angles by about 0.001 degree and flip about 0.1% of borderline windows.
* Arithmetic that decides *which* keypoints exist, and in which order (box
  filter responses, determinant, window sums), is done in float32 in the same
  operation order as OpenCV, so responses are bit-identical and the ordering by
  response matches.
* Oriented descriptor windows are sampled exactly as OpenCV's loop does
  (float32 bilinear weights, rounding to uint8, nearest clamped pixel outside
  the image), batched over keypoints with the same window side.  Interior
  windows wider than ``_EXACT_MAX_WIN`` px use ``cv2.warpAffine`` instead
  (sub-pixel positions quantised to 1/32 px): after the area resize to
  21 x 21 the few differing pixels move those descriptors by ~1e-3 (L2), and
  exact sampling of such windows would dominate the run time.  Upright
  windows are exact.
* Input must be 8-bit.  Colour (3 or 4 channels, BGR/BGRA) is converted to
  grey; 16-bit and float images are refused with ``ValueError`` because any
  rescaling rule would silently change what ``hessianThreshold`` means (it is
  in 8-bit grey-level-squared units).  Convert explicitly, e.g.
  ``cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)``.
* No keypoints gives ``[]`` and an empty ``(0, 64|128)`` float32 descriptor
  array, never ``None``, so callers can rely on ``descriptors.shape[0]``.
* A final angle of exactly 360.0 (float32 rounding of ``360 - tiny``) is
  reported as 0.0 so angles stay in [0, 360).

SURF is covered by patents (US 8,165,401 and its continuation); that is why
OpenCV keeps it out of its default builds.
"""

import math

import cv2
import numpy as np

__all__ = ["SURF", "SURF_create"]

_F32 = np.float32

# Box lobes on the 9x9 template: (x0, y0, x1, y1, weight), half-open.
_DXX = ((0, 2, 3, 7, 1), (3, 2, 6, 7, -2), (6, 2, 9, 7, 1))
_DYY = ((2, 0, 7, 3, 1), (2, 3, 7, 6, -2), (2, 6, 7, 9, 1))
_DXY = ((1, 1, 4, 4, 1), (5, 1, 8, 4, -1), (1, 5, 4, 8, -1), (5, 5, 8, 8, 1))

_ORI_RADIUS = 6
_ORI_SIGMA = 2.5
_ORI_WIN_HALF = 30
_ORI_STEP = 5
_PATCH = 20
_DESC_SIGMA = 3.3

# Bounds the temporaries of the batched orientation / descriptor stages.
_KP_CHUNK = 2048
_SAMPLE_CHUNK = 1 << 19
# Windows up to this side are sampled exactly (see _windows_oriented).
_EXACT_MAX_WIN = 200

_RAD2DEG = 180.0 / math.pi
_ATAN_P1 = _F32(0.9997878412794807 * _RAD2DEG)
_ATAN_P3 = _F32(-0.3258083974640975 * _RAD2DEG)
_ATAN_P5 = _F32(0.1555786518463281 * _RAD2DEG)
_ATAN_P7 = _F32(-0.04432655554792128 * _RAD2DEG)
_DBL_EPS_F32 = _F32(np.finfo(np.float64).eps)


def _fast_atan2_deg(y, x):
    """OpenCV's fastAtan2 in float32, in degrees [0, 360]."""
    y = np.asarray(y, dtype=_F32)
    x = np.asarray(x, dtype=_F32)
    ax = np.abs(x)
    ay = np.abs(y)
    x_major = ax >= ay
    num = np.where(x_major, ay, ax)
    den = np.where(x_major, ax, ay) + _DBL_EPS_F32
    c = num / den
    c2 = c * c
    a = (((_ATAN_P7 * c2 + _ATAN_P5) * c2 + _ATAN_P3) * c2 + _ATAN_P1) * c
    a = np.where(x_major, a, _F32(90.0) - a)
    a = np.where(x < 0, _F32(180.0) - a, a)
    a = np.where(y < 0, _F32(360.0) - a, a)
    return a.astype(_F32, copy=False)


def _gaussian_taps(n, sigma, ones_at=()):
    """Normalised float32 Gaussian, centred at (n-1)/2, optionally with taps forced to 1.

    OpenCV's even-length kernel forces its two central taps to 1 before
    normalising; descriptors only match bit-for-bit with that quirk.
    """
    x = np.arange(n, dtype=np.float64) - (n - 1) * 0.5
    t = np.exp(-(x * x) / (2.0 * sigma * sigma))
    t[list(ones_at)] = 1.0
    return (t / t.sum()).astype(_F32)


def _orientation_pattern():
    g = _gaussian_taps(2 * _ORI_RADIUS + 1, _ORI_SIGMA)
    r = np.arange(-_ORI_RADIUS, _ORI_RADIUS + 1)
    # i is the outer loop and the x offset, as in OpenCV's sample table.
    ii, jj = np.meshgrid(r, r, indexing="ij")
    keep = ii * ii + jj * jj <= _ORI_RADIUS * _ORI_RADIUS
    ii, jj = ii[keep], jj[keep]
    w = g[ii + _ORI_RADIUS] * g[jj + _ORI_RADIUS]
    return ii.astype(_F32), jj.astype(_F32), w.astype(_F32)


_APT_X, _APT_Y, _APT_W = _orientation_pattern()
_DESC_G = _gaussian_taps(_PATCH, _DESC_SIGMA, ones_at=(_PATCH // 2 - 1, _PATCH // 2))
_DESC_W = (_DESC_G[:, None] * _DESC_G[None, :]).astype(_F32)


def _scaled_lobes(template, size):
    """Lobes of a 9-template scaled to side `size`: int corners and float32 weights."""
    ratio = _F32(size) / _F32(9)
    out = []
    for x0, y0, x1, y1, wt in template:
        cx0, cy0, cx1, cy1 = (int(np.rint(ratio * _F32(c))) for c in (x0, y0, x1, y1))
        area = _F32(cx1 - cx0) * _F32(cy1 - cy0)
        out.append((cx0, cy0, cx1, cy1, _F32(wt) / area))
    return out


class _BoxSampler:
    """Exact box sums over the image, read on an octave's sampling grid.

    Octave 0 uses cv2.boxFilter (one pass per lobe shape, shared by the lobes
    of a filter); coarser octaves read the integral image with strided slices
    so that nothing larger than the octave's grid is ever allocated.
    """

    def __init__(self, img, integral):
        self.img = img
        self.integral = integral
        self._cache = {}

    def new_filter_size(self):
        # Lobes of one filter size share box maps; drop them before the next size.
        self._cache.clear()

    def lobe_sums(self, st, lobe, nr, nc):
        """float32 (nr, nc) map: sum of `lobe` with its filter's top-left at (st*r, st*c)."""
        x0, y0, x1, y1, _ = lobe
        bw, bh = x1 - x0, y1 - y0
        if st == 1:
            key = (bw, bh)
            box = self._cache.get(key)
            if box is None:
                # Exact: integer running sums converted once (< 2**24 for every lobe).
                box = cv2.boxFilter(
                    self.img, cv2.CV_32F, (bw, bh), normalize=False,
                    anchor=(0, 0), borderType=cv2.BORDER_CONSTANT,
                )
                self._cache[key] = box
            return box[y0:y0 + nr, x0:x0 + nc]
        ii = self.integral
        ys0 = slice(y0, y0 + st * (nr - 1) + 1, st)
        ys1 = slice(y1, y1 + st * (nr - 1) + 1, st)
        xs0 = slice(x0, x0 + st * (nc - 1) + 1, st)
        xs1 = slice(x1, x1 + st * (nc - 1) + 1, st)
        s = ii[ys1, xs1] - ii[ys0, xs1]
        s -= ii[ys1, xs0]
        s += ii[ys0, xs0]
        return s.astype(_F32)


def _filter_response(sampler, st, lobes, nr, nc):
    # Same float32 accumulation order as OpenCV, so responses match bit for bit.
    acc = None
    for lobe in lobes:
        term = sampler.lobe_sums(st, lobe, nr, nc) * lobe[4]
        acc = term if acc is None else np.add(acc, term, out=acc)
    return acc


def _octave_maps(sampler, shape, octave, n_layers):
    """det and trace maps (float32, H//st x W//st) of every layer of one octave."""
    h, w = shape
    st = 1 << octave
    rows, cols = h // st, w // st
    dets, traces, sizes = [], [], []
    for layer in range(n_layers + 2):
        size = (9 + 6 * layer) << octave
        det = np.zeros((rows, cols), _F32)
        trace = np.zeros((rows, cols), _F32)
        if size <= h and size <= w:
            nr = 1 + (h - size) // st
            nc = 1 + (w - size) // st
            m = (size // 2) // st
            sampler.new_filter_size()
            dxx = _filter_response(sampler, st, _scaled_lobes(_DXX, size), nr, nc)
            dyy = _filter_response(sampler, st, _scaled_lobes(_DYY, size), nr, nc)
            dxy = _filter_response(sampler, st, _scaled_lobes(_DXY, size), nr, nc)
            d = det[m:m + nr, m:m + nc]
            np.multiply(dxx, dyy, out=d)
            dxy2 = dxy * _F32(0.81)
            dxy2 *= dxy
            d -= dxy2
            np.add(dxx, dyy, out=trace[m:m + nr, m:m + nc])
        dets.append(det)
        traces.append(trace)
        sizes.append(size)
    return dets, traces, sizes


_NEIGHBOURS = [(dl, dy, dx) for dl in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
               if (dl, dy, dx) != (0, 0, 0)]


def _find_extrema(dets, traces, sizes, octave, threshold, mask_integral, img_shape):
    """Keypoint fields of the interpolated maxima of one octave (dict of arrays)."""
    st = 1 << octave
    rows, cols = dets[0].shape
    out = []
    thr = _F32(threshold)
    for layer in range(1, len(dets) - 1):
        size = sizes[layer]
        margin = (sizes[layer + 1] // 2) // st + 1
        if rows - margin <= margin or cols - margin <= margin:
            continue
        core = (slice(margin, rows - margin), slice(margin, cols - margin))
        det = dets[layer]
        val = det[core]
        # Cheap pre-filter with non-strict 3x3 maxima; the strict 26-neighbour
        # test runs only on the survivors.
        cand = val > thr
        for lay in (det, dets[layer - 1], dets[layer + 1]):
            cand &= val >= cv2.dilate(lay, None)[core]
        r, c = np.nonzero(cand)
        if r.size == 0:
            continue
        r = r + margin
        c = c + margin
        v = det[r, c]
        ok = np.ones(r.size, bool)
        n9 = {}
        for dl, dy, dx in _NEIGHBOURS:
            nv = dets[layer + dl][r + dy, c + dx]
            n9[(dl, dy, dx)] = nv
            ok &= v > nv
        m = (size // 2) // st
        sum_i = st * (r - m)
        sum_j = st * (c - m)
        if mask_integral is not None:
            ok &= _mask_mean(mask_integral, sum_i, sum_j, size) >= 0.5
        if not ok.any():
            continue
        sel = np.nonzero(ok)[0]
        n9 = {k: a[sel] for k, a in n9.items()}
        n9[(0, 0, 0)] = v[sel]
        r, c, sum_i, sum_j = r[sel], c[sel], sum_i[sel], sum_j[sel]
        half = _F32(0.5)
        cy = sum_i.astype(_F32) + _F32(size - 1) * half
        cx = sum_j.astype(_F32) + _F32(size - 1) * half
        off, good = _interpolate(n9)
        x = cx + off[:, 0].astype(_F32) * _F32(st)
        y = cy + off[:, 1].astype(_F32) * _F32(st)
        new_size = np.rint(_F32(size) + off[:, 2].astype(_F32) * _F32(sizes[layer] - sizes[layer - 1]))
        tr = traces[layer][r, c]
        cls = (tr > 0).astype(np.int32) - (tr < 0).astype(np.int32)
        out.append(dict(x=x[good], y=y[good], size=new_size.astype(_F32)[good],
                        response=n9[(0, 0, 0)][good],
                        octave=np.full(int(good.sum()), octave, np.int32), class_id=cls[good]))
    return out


def _mask_mean(mask_integral, sum_i, sum_j, size):
    mi = mask_integral
    s = (mi[sum_i + size, sum_j + size] - mi[sum_i, sum_j + size]
         - mi[sum_i + size, sum_j] + mi[sum_i, sum_j])
    return s.astype(_F32) * (_F32(1) / (_F32(size) * _F32(size)))


def _interpolate(n9):
    """One Newton step in (x, y, scale): offsets (n, 3) and acceptance mask."""
    def g(dl, dy, dx):
        return n9[(dl, dy, dx)]

    f32 = _F32
    b = np.stack([
        -(g(0, 0, 1) - g(0, 0, -1)) / f32(2),
        -(g(0, 1, 0) - g(0, -1, 0)) / f32(2),
        -(g(1, 0, 0) - g(-1, 0, 0)) / f32(2),
    ], axis=-1).astype(np.float64)
    c0 = g(0, 0, 0)
    dxx = g(0, 0, -1) - f32(2) * c0 + g(0, 0, 1)
    dyy = g(0, -1, 0) - f32(2) * c0 + g(0, 1, 0)
    dss = g(-1, 0, 0) - f32(2) * c0 + g(1, 0, 0)
    dxy = (g(0, 1, 1) - g(0, 1, -1) - g(0, -1, 1) + g(0, -1, -1)) / f32(4)
    dxs = (g(1, 0, 1) - g(1, 0, -1) - g(-1, 0, 1) + g(-1, 0, -1)) / f32(4)
    dys = (g(1, 1, 0) - g(1, -1, 0) - g(-1, 1, 0) + g(-1, -1, 0)) / f32(4)
    a = np.empty((c0.size, 3, 3), np.float64)
    a[:, 0, 0], a[:, 1, 1], a[:, 2, 2] = dxx, dyy, dss
    a[:, 0, 1] = a[:, 1, 0] = dxy
    a[:, 0, 2] = a[:, 2, 0] = dxs
    a[:, 1, 2] = a[:, 2, 1] = dys
    det = np.linalg.det(a)
    solvable = det != 0
    off = np.zeros((c0.size, 3), np.float64)
    if solvable.any():
        off[solvable] = np.linalg.solve(a[solvable], b[solvable][..., None])[..., 0]
    off = off.astype(_F32)
    good = solvable & np.any(off != 0, axis=1) & np.all(np.abs(off) <= 1, axis=1)
    return off, good


def _detect(img, integral, mask, n_octaves, n_layers, threshold):
    h, w = img.shape
    mask_integral = None
    if mask is not None:
        mask_integral = cv2.integral((mask > 0).astype(np.uint8), sdepth=cv2.CV_32S)
    sampler = _BoxSampler(img, integral)
    parts = []
    for octave in range(n_octaves):
        if (9 << octave) > min(h, w):
            break
        dets, traces, sizes = _octave_maps(sampler, (h, w), octave, n_layers)
        parts.extend(_find_extrema(dets, traces, sizes, octave, threshold, mask_integral, (h, w)))
    if not parts:
        return None
    kp = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if mask is not None:
        xi = np.clip(np.rint(kp["x"]).astype(np.int64), 0, w - 1)
        yi = np.clip(np.rint(kp["y"]).astype(np.int64), 0, h - 1)
        keep = mask[yi, xi] != 0
        kp = {k: v[keep] for k, v in kp.items()}
    # Response descending; ties by larger size, higher octave, larger y, smaller x.
    order = np.lexsort((kp["x"], -kp["y"], -kp["octave"], -kp["size"], -kp["response"]))
    return {k: v[order] for k, v in kp.items()}


def _orientation(integral, x, y, size):
    """Dominant angle (float32 degrees) per keypoint, and which keypoints had samples."""
    n = x.size
    hp1, wp1 = integral.shape
    s = size * _F32(1.2) / _F32(9)
    g = (2 * np.rint(_F32(2) * s)).astype(np.int64)
    gh = g // 2
    half = (g - 1).astype(_F32) / _F32(2)
    sx = np.rint((x[:, None] + _APT_X[None, :] * s[:, None]) - half[:, None]).astype(np.int64)
    sy = np.rint((y[:, None] + _APT_Y[None, :] * s[:, None]) - half[:, None]).astype(np.int64)
    valid = (sy >= 0) & (sy < hp1 - g[:, None]) & (sx >= 0) & (sx < wp1 - g[:, None])
    sx = np.where(valid, sx, 0)
    sy = np.where(valid, sy, 0)
    gg, hh = g[:, None], gh[:, None]
    flat = integral.reshape(-1)
    base = sy * wp1 + sx

    def at(dy, dx):
        return flat[base + dy * wp1 + dx].astype(np.int64)

    # 3x3 grid of integral corners covers both half-box Haar wavelets.
    c00, c01, c02 = at(0, 0), at(0, hh), at(0, gg)
    c10, c12 = at(hh, 0), at(hh, gg)
    c20, c21, c22 = at(gg, 0), at(gg, hh), at(gg, gg)
    wgt = _F32(1) / (gh.astype(_F32) * g.astype(_F32))
    wgt = wgt[:, None]
    left = (c21 - c01 - c20 + c00).astype(_F32)
    right = (c22 - c02 - c21 + c01).astype(_F32)
    top = (c12 - c02 - c10 + c00).astype(_F32)
    bottom = (c22 - c12 - c20 + c10).astype(_F32)
    vx = left * (-wgt) + right * wgt
    vy = top * wgt + bottom * (-wgt)
    gx = np.where(valid, vx * _APT_W, _F32(0))
    gy = np.where(valid, vy * _APT_W, _F32(0))
    ang = np.rint(_fast_atan2_deg(gy, gx)).astype(np.int64) % 360
    idx = (np.arange(n)[:, None] * 360 + ang).ravel()
    hx = np.bincount(idx, gx.astype(np.float64).ravel(), n * 360).reshape(n, 360)
    hy = np.bincount(idx, gy.astype(np.float64).ravel(), n * 360).reshape(n, 360)
    k = _ORI_WIN_HALF - 1
    starts = np.arange(0, 360, _ORI_STEP)

    def window_sums(hist):
        # Circular 59-degree sums (|d| < 30 with integer angles) at every start.
        padded = np.concatenate([np.zeros((n, 1)), hist[:, 360 - k:], hist, hist[:, :k]], axis=1)
        cs = np.cumsum(padded, axis=1)
        return (cs[:, starts + 2 * k + 1] - cs[:, starts]).astype(_F32)

    wx, wy = window_sums(hx), window_sums(hy)
    mod = wx * wx + wy * wy
    best = np.argmax(mod, axis=1)
    bx = wx[np.arange(n), best]
    by = wy[np.arange(n), best]
    angle = _fast_atan2_deg(-by, bx)
    return angle, valid.any(axis=1)


def _windows_exact(img, sx, sy, cos_d, sin_d, w):
    """OpenCV SURF's own sampler for K same-size windows: (K, w, w) uint8.

    Float32 bilinear rounded to uint8 inside the image, nearest clamped pixel
    outside.  Row starts advance in float32 and positions along a row in
    double, as in OpenCV, so sub-pixel weights (and hence the rounding) agree.
    """
    h, w_img = img.shape
    k = sx.size
    steps = np.empty((k, w), _F32)
    steps[:, 0] = sx
    steps[:, 1:] = sin_d[:, None]
    row_x = np.cumsum(steps, axis=1, dtype=_F32).astype(np.float64)[:, :, None]
    steps[:, 0] = sy
    steps[:, 1:] = cos_d[:, None]
    row_y = np.cumsum(steps, axis=1, dtype=_F32).astype(np.float64)[:, :, None]
    j = np.arange(w, dtype=np.float64)[None, None, :]
    px = row_x + j * cos_d.astype(np.float64)[:, None, None]
    py = row_y - j * sin_d.astype(np.float64)[:, None, None]
    fx = np.floor(px)
    fy = np.floor(py)
    a = (px - fx).astype(_F32)
    b = (py - fy).astype(_F32)
    ix = fx.astype(np.intp)
    iy = fy.astype(np.intp)
    inside = (ix.view(np.uintp) < w_img - 1) & (iy.view(np.uintp) < h - 1)
    flat = img.reshape(-1)
    base = np.clip(iy, 0, h - 2) * w_img + np.clip(ix, 0, w_img - 2)
    one = _F32(1)
    na = one - a
    nb = one - b
    val = flat[base].astype(_F32) * na * nb
    val += flat[base + 1].astype(_F32) * a * nb
    val += flat[base + w_img].astype(_F32) * na * b
    val += flat[base + w_img + 1].astype(_F32) * a * b
    out = np.rint(val).astype(np.uint8)
    if not inside.all():
        out_idx = ~inside
        ny = np.clip(np.rint(py[out_idx]), 0, h - 1).astype(np.intp)
        nx = np.clip(np.rint(px[out_idx]), 0, w_img - 1).astype(np.intp)
        out[out_idx] = img[ny, nx]
    return out


def _windows_oriented(img, x, y, size, angle, win):
    """Sample each keypoint's w x w rotated window and area-resize it to 21 x 21."""
    h, w_img = img.shape
    n = x.size
    patches = np.empty((n, _PATCH + 1, _PATCH + 1), np.uint8)
    rad = angle * _F32(math.pi / 180)
    sin_dir = -np.sin(rad.astype(np.float64)).astype(_F32)
    cos_dir = np.cos(rad.astype(np.float64)).astype(_F32)
    off = -(win - 1).astype(_F32) / _F32(2)
    start_x = (x + off * cos_dir) + off * sin_dir
    start_y = (y - off * sin_dir) + off * cos_dir
    reach = (win.astype(np.float64) - 1) * (0.5 * math.sqrt(2.0)) + 2.0
    touches = ((x - reach < 0) | (y - reach < 0)
               | (x + reach >= w_img - 1) | (y + reach >= h - 1))
    exact = touches | (win <= _EXACT_MAX_WIN)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    dsize = (_PATCH + 1, _PATCH + 1)
    for k in np.nonzero(~exact)[0]:
        # Large interior windows: 1/32-px warp is close enough once area-averaged.
        w = int(win[k])
        m = np.array([[cos_dir[k], sin_dir[k], start_x[k]],
                      [-sin_dir[k], cos_dir[k], start_y[k]]], np.float64)
        wnd = cv2.warpAffine(img, m, (w, w), flags=flags, borderMode=cv2.BORDER_REPLICATE)
        patches[k] = cv2.resize(wnd, dsize, interpolation=cv2.INTER_AREA)
    idx = np.nonzero(exact)[0]
    for w in np.unique(win[idx]):
        group = idx[win[idx] == w]
        w = int(w)
        per = max(1, _SAMPLE_CHUNK // (w * w))
        for lo in range(0, group.size, per):
            g = group[lo:lo + per]
            wnds = _windows_exact(img, start_x[g], start_y[g], cos_dir[g], sin_dir[g], w)
            for kk, wnd in zip(g, wnds):
                patches[kk] = cv2.resize(wnd, dsize, interpolation=cv2.INTER_AREA)
    return patches


def _windows_upright(img, x, y, win):
    h, w_img = img.shape
    n = x.size
    patches = np.empty((n, _PATCH + 1, _PATCH + 1), np.uint8)
    off = -(win - 1).astype(_F32) / _F32(2)
    x0 = np.rint(x + off).astype(np.int64)
    y0 = np.rint(y - off).astype(np.int64)
    for k in range(n):
        w = int(win[k])
        # Patch row i runs along +x, column j along -y: the 270 degree frame.
        cols = np.clip(x0[k] + np.arange(w), 0, w_img - 1)
        rows = np.clip(y0[k] - np.arange(w), 0, h - 1)
        wnd = img[rows[None, :], cols[:, None]]
        patches[k] = cv2.resize(wnd, (_PATCH + 1, _PATCH + 1), interpolation=cv2.INTER_AREA)
    return patches


def _descriptors_from_patches(patches, extended):
    p = patches.astype(np.int32)
    dx = (p[:, :-1, 1:] - p[:, :-1, :-1] + p[:, 1:, 1:] - p[:, 1:, :-1]).astype(_F32) * _DESC_W
    dy = (p[:, 1:, :-1] - p[:, :-1, :-1] + p[:, 1:, 1:] - p[:, :-1, 1:]).astype(_F32) * _DESC_W
    n = p.shape[0]
    # (n, 4, 5, 4, 5) -> blocks (n, 4, 4) of 25 samples, row-major.
    bx = dx.reshape(n, 4, 5, 4, 5).transpose(0, 1, 3, 2, 4).reshape(n, 16, 25).astype(np.float64)
    by = dy.reshape(n, 4, 5, 4, 5).transpose(0, 1, 3, 2, 4).reshape(n, 16, 25).astype(np.float64)
    if extended:
        ypos, xpos = by >= 0, bx >= 0
        feats = [
            np.where(ypos, bx, 0), np.where(ypos, np.abs(bx), 0),
            np.where(ypos, 0, bx), np.where(ypos, 0, np.abs(bx)),
            np.where(xpos, by, 0), np.where(xpos, np.abs(by), 0),
            np.where(xpos, 0, by), np.where(xpos, 0, np.abs(by)),
        ]
    else:
        feats = [bx, by, np.abs(bx), np.abs(by)]
    vec = np.stack([f.sum(axis=2) for f in feats], axis=2).reshape(n, -1).astype(_F32)
    norm = np.sqrt((vec.astype(np.float64) ** 2).sum(axis=1))
    scale = (1.0 / (norm + np.finfo(np.float32).eps)).astype(_F32)
    return vec * scale[:, None]


def _as_gray_u8(image):
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(
            f"SURF needs an 8-bit image, got dtype {img.dtype}; convert it first "
            "(e.g. cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)), "
            "because hessianThreshold is in 8-bit grey-level units"
        )
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3 and img.shape[2] == 3 and img.size:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    elif img.ndim == 3 and img.shape[2] == 4 and img.size:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
    elif img.ndim == 3 and img.shape[2] in (3, 4):
        img = img[:, :, 0]
    if img.ndim != 2:
        raise ValueError(
            f"SURF needs a 2-D grey image or a 3/4-channel colour image, got shape {img.shape}"
        )
    return np.ascontiguousarray(img)


def _check_mask(mask, shape):
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.dtype == bool:
        m = m.astype(np.uint8)
    if m.dtype != np.uint8 or m.ndim != 2:
        raise ValueError(
            f"mask must be a 2-D uint8 (or bool) array, got dtype {m.dtype} and shape {m.shape}"
        )
    if m.shape != tuple(shape):
        raise ValueError(f"mask shape {m.shape} does not match image shape {tuple(shape)}")
    return np.ascontiguousarray(m)


def _integral(img):
    h, w = img.shape
    if h * w * 255 < 2**31:
        return cv2.integral(img, sdepth=cv2.CV_32S)
    return cv2.integral(img, sdepth=cv2.CV_64F).astype(np.int64)


class SURF:
    """Speeded-Up Robust Features with OpenCV's ``Feature2D`` interface.

    Parameters mirror ``cv2.xfeatures2d.SURF_create``.  Keypoints are
    ``cv2.KeyPoint`` objects sorted by response (strongest first); descriptors
    are float32 rows (64, or 128 when ``extended``), unit L2 norm, matched with
    ``cv2.NORM_L2``.
    """

    def __init__(self, hessianThreshold=100, nOctaves=4, nOctaveLayers=3,
                 extended=False, upright=False):
        if int(nOctaves) < 1 or int(nOctaveLayers) < 1:
            raise ValueError("nOctaves and nOctaveLayers must be at least 1")
        self.hessianThreshold = float(hessianThreshold)
        self.nOctaves = int(nOctaves)
        self.nOctaveLayers = int(nOctaveLayers)
        self.extended = bool(extended)
        self.upright = bool(upright)

    # OpenCV-style accessors, so code written for cv2's SURF keeps working.
    def getHessianThreshold(self):
        return self.hessianThreshold

    def setHessianThreshold(self, value):
        self.hessianThreshold = float(value)

    def getNOctaves(self):
        return self.nOctaves

    def setNOctaves(self, value):
        self.nOctaves = int(value)

    def getNOctaveLayers(self):
        return self.nOctaveLayers

    def setNOctaveLayers(self, value):
        self.nOctaveLayers = int(value)

    def getExtended(self):
        return self.extended

    def setExtended(self, value):
        self.extended = bool(value)

    def getUpright(self):
        return self.upright

    def setUpright(self, value):
        self.upright = bool(value)

    def getDefaultName(self):
        return "Feature2D.SURF"

    def descriptorSize(self):
        return 128 if self.extended else 64

    def descriptorType(self):
        return cv2.CV_32F

    def defaultNorm(self):
        return cv2.NORM_L2

    def empty(self):
        return False

    def detect(self, image, mask=None):
        keypoints, _ = self._run(image, mask, None, with_descriptors=False)
        return keypoints

    def compute(self, image, keypoints):
        return self._run(image, None, keypoints, with_descriptors=True)

    def detectAndCompute(self, image, mask=None, descriptors=None, useProvidedKeypoints=False,
                         keypoints=None):
        """Detect keypoints (or take ``keypoints`` when ``useProvidedKeypoints``) and describe them.

        ``descriptors`` exists only for signature compatibility with OpenCV and is ignored.
        """
        provided = None
        if useProvidedKeypoints:
            provided = [] if keypoints is None else keypoints
        return self._run(image, mask, provided, with_descriptors=True)

    def _empty_result(self):
        return [], np.zeros((0, self.descriptorSize()), _F32)

    def _run(self, image, mask, provided, with_descriptors):
        img = _as_gray_u8(image)
        mask = _check_mask(mask, img.shape)
        if img.size == 0:
            return self._empty_result()
        integral = _integral(img)
        if provided is None:
            kp = _detect(img, integral, mask, self.nOctaves, self.nOctaveLayers,
                         self.hessianThreshold)
            if kp is None:
                return self._empty_result()
        else:
            kp = _fields_from_keypoints(provided)
        x, y, size = kp["x"], kp["y"], kp["size"]
        keep = size > 0
        s = size * _F32(1.2) / _F32(9)
        g = 2 * np.rint(_F32(2) * s)
        keep &= (g <= integral.shape[0]) & (g <= integral.shape[1])
        angle = np.full(x.size, 270.0, _F32)
        if not self.upright:
            for lo in range(0, x.size, _KP_CHUNK):
                sl = slice(lo, lo + _KP_CHUNK)
                sub = np.nonzero(keep[sl])[0] + lo
                if sub.size == 0:
                    continue
                a, has = _orientation(integral, x[sub], y[sub], size[sub])
                angle[sub] = a
                keep[sub] &= has
        idx = np.nonzero(keep)[0]
        x, y, size, angle = x[idx], y[idx], size[idx], angle[idx]
        desc = np.zeros((idx.size, self.descriptorSize()), _F32)
        if with_descriptors and idx.size:
            win = (_F32(_PATCH + 1) * (size * _F32(1.2) / _F32(9))).astype(np.int64)
            for lo in range(0, idx.size, _KP_CHUNK):
                sl = slice(lo, lo + _KP_CHUNK)
                if self.upright:
                    patches = _windows_upright(img, x[sl], y[sl], win[sl])
                else:
                    patches = _windows_oriented(img, x[sl], y[sl], size[sl], angle[sl], win[sl])
                desc[sl] = _descriptors_from_patches(patches, self.extended)
        out_angle = np.where(angle >= 360, _F32(0), angle)
        keypoints = [
            cv2.KeyPoint(float(x[i]), float(y[i]), float(size[i]), float(out_angle[i]),
                         float(kp["response"][j]), int(kp["octave"][j]), int(kp["class_id"][j]))
            for i, j in enumerate(idx)
        ]
        return keypoints, desc


def _fields_from_keypoints(keypoints):
    kps = list(keypoints)
    return dict(
        x=np.array([k.pt[0] for k in kps], _F32),
        y=np.array([k.pt[1] for k in kps], _F32),
        size=np.array([k.size for k in kps], _F32),
        response=np.array([k.response for k in kps], _F32),
        octave=np.array([k.octave for k in kps], np.int32),
        class_id=np.array([k.class_id for k in kps], np.int32),
    )


def SURF_create(hessianThreshold=100, nOctaves=4, nOctaveLayers=3, extended=False,
                upright=False):
    """Build a :class:`SURF`, spelled like ``cv2.xfeatures2d.SURF_create``."""
    return SURF(hessianThreshold, nOctaves, nOctaveLayers, extended, upright)
