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
  by ``cv2.phase``, which runs OpenCV's own implementation of it, both for the
  sample angles of the orientation search and for the final keypoint angle.
  NumPy's exact ``arctan2`` would move angles by about 0.001 degree and flip
  about 0.1% of borderline windows.
* Arithmetic that decides *which* keypoints exist, and in which order (box
  filter responses, determinant, window sums), is done in float32 in the same
  operation order as OpenCV, so responses are bit-identical and the ordering by
  response matches.
* Oriented descriptor windows: sampled by ``cv2.remap`` (bilinear, float32
  maps) in bands of about ``_BAND`` samples, several same-side windows per
  band or a large window in several row bands, then area-resized to 21 x 21
  by one ``cv2.resize`` of the stacked windows (identical to resizing each
  window).  A band's maps are built by a BLAS product (exact, see
  ``_windows_oriented``) and remapped as long rows, which suits remap's SIMD
  loop better than one short window row at a time.  The maps reproduce OpenCV
  SURF's sample positions (row starts accumulated in float32, as its loop
  does); samples whose 2 x 2 neighbourhood leaves the image take the nearest
  clamped pixel: their map entries are moved onto that pixel's centre, where
  bilinear interpolation returns the pixel itself, so one remap serves border
  and interior alike; only border windows, and in a large window only the
  column strips that can reach out, are examined.  OpenCV >= 4.11
  interpolates remap with float weights, so about 0.3% of window pixels
  differ from OpenCV SURF's own float32 arithmetic, by one grey level; after
  the area resize descriptors move by ~1e-3 (L2) at most, rarely more for a
  low-contrast window.  Builds whose remap quantises positions to 1/32 px are
  detected once (``_remap_is_exact``) and get the exact, slower NumPy sampler
  (``_windows_exact``).  Upright windows are exact.
* Box filters: a lobe's weight is k / area with k in {1, -1, -2}, so the
  lobes of one shape share one map of box sums / area and each lobe is a
  shifted view times k (exact: k is a power of two up to sign).  That is 3
  box-sum maps per layer instead of 10, with the same float32 results.
* The heavy stages are whole-array OpenCV calls (boxFilter, remap, resize,
  dilate, compare, findNonZero, phase) or NumPy ufuncs on large blocks, which
  run without the GIL, so concurrent requests share the cores.
* Detection keeps three determinant maps per octave alive at a time (the
  layers around the middle layer being searched), computes them in row
  blocks, and evaluates the trace only at the keypoints, so memory stays at a
  few float32 copies of the image whatever its size.
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

import functools
import math

import cv2
import numpy as np

__all__ = ["SURF", "SURF_create", "keypoints_from_columns"]

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
# Orientation works on smaller chunks: its many (n, 113) temporaries then
# stay cache-sized and are recycled by the allocator instead of page-faulted.
_ORI_CHUNK = 256
_SAMPLE_CHUNK = 1 << 19
# Samples per remap band of the oriented windows.  Smaller bands keep the
# maps in L2 but mean more calls, and every call is a GIL hand-off when
# threads share the process: at 1 << 16 two threads gained 1.32x over one,
# at 1 << 19 1.49x, at about the same one-thread speed.
_BAND = 1 << 19
_REMAP_ROW = 1024
# Cells per row block of a determinant map (keeps temporaries cache-sized).
_DET_BLOCK = 1 << 17
# m * n * k of a matrix product OpenBLAS runs on one thread (its
# SMP_THRESHOLD_MIN 65536 x GEMM_MULTITHREAD_THRESHOLD 4).
_GEMM_ONE_THREAD = 1 << 18
# cv2.remap needs fewer than SHRT_MAX rows and columns.
_MAX_STACK_ROWS = 32000



def _fast_atan2_deg(y, x):
    """OpenCV's fastAtan2 in float32 degrees [0, 360], by cv2.phase.

    cv2.phase runs the polynomial OpenCV SURF's orientation uses
    (hal::fastAtan32f), in C and without the GIL.  Its SIMD body and scalar
    tail may round the last bit differently, so the input is padded to a
    whole number of the widest vectors: every value then takes the SIMD path
    and the result does not depend on where it sits in the array.
    """
    y = np.asarray(y, dtype=_F32)
    x = np.asarray(x, dtype=_F32)
    shape = np.broadcast_shapes(x.shape, y.shape)
    n = math.prod(shape)
    if n == 0:
        return np.zeros(shape, _F32)
    padded = -(-n // _PHASE_LANES) * _PHASE_LANES
    xy = np.zeros((2, padded, 1), _F32)
    xy[0, :n, 0] = np.broadcast_to(x, shape).reshape(-1)
    xy[1, :n, 0] = np.broadcast_to(y, shape).reshape(-1)
    return cv2.phase(xy[0], xy[1], angleInDegrees=True)[:n, 0].reshape(shape)


# 16 float32 lanes: the widest SIMD OpenCV dispatches (AVX-512).
_PHASE_LANES = 16


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


@functools.lru_cache(maxsize=256)
def _scaled_lobes(template, size):
    """Lobes of a 9-template scaled to side `size`: int corners and float32 weights."""
    ratio = _F32(size) / _F32(9)
    out = []
    for x0, y0, x1, y1, wt in template:
        cx0, cy0, cx1, cy1 = (int(np.rint(ratio * _F32(c))) for c in (x0, y0, x1, y1))
        area = _F32(cx1 - cx0) * _F32(cy1 - cy0)
        out.append((cx0, cy0, cx1, cy1, _F32(wt) / area))
    return tuple(out)


@functools.lru_cache(maxsize=256)
def _filter_plan(template, size, st):
    """How to evaluate one box filter with as few full-size passes as possible.

    A lobe's term is float32(box sum) * (k / area) with k in {1, -1, -2}; as
    k is a power of two up to sign, that equals k * float32(box sum / area)
    exactly.  Lobes of one shape whose corners lie on the same octave-grid
    phase therefore share one map T = box sum * (1 / area) over a grid wide
    enough for all of them, each lobe being a shifted view times k.  Returns
    (groups, terms): groups are (bw, bh, phase_y, phase_x, gy0, gx0, gy1, gx1,
    base) with the grid-cell span the views need, terms are (group, dy, dx, k)
    in template order.
    """
    lobes = _scaled_lobes(template, size)
    groups, terms = [], []
    for (x0, y0, x1, y1, wt), (*_, k) in zip(lobes, template):
        bw, bh = x1 - x0, y1 - y0
        base = _F32(1) / (_F32(bw) * _F32(bh))
        if _F32(k) * base != wt:
            raise AssertionError("lobe weight is not k / area")  # pragma: no cover
        key = (bw, bh, y0 % st, x0 % st, base)
        gi = next((i for i, g in enumerate(groups) if g[0] == key), None)
        if gi is None:
            gi = len(groups)
            groups.append([key, y0 // st, x0 // st, y0 // st, x0 // st])
        g = groups[gi]
        g[1], g[2] = min(g[1], y0 // st), min(g[2], x0 // st)
        g[3], g[4] = max(g[3], y0 // st), max(g[4], x0 // st)
        terms.append((gi, y0 // st, x0 // st, int(k)))
    plan = tuple((bw, bh, py, px, gy0, gx0, gy1, gx1, base)
                 for (bw, bh, py, px, base), gy0, gx0, gy1, gx1 in groups)
    return plan, tuple((gi, dy - plan[gi][4], dx - plan[gi][5], k) for gi, dy, dx, k in terms)


def _filter_rows(img, integral, st, plan, i0, i1, nc, acc, tmp):
    """One box filter's response for valid cells rows i0..i1-1, into `acc` ((i1 - i0, nc) float32).

    Row i / column j of the valid region has the filter's top-left pixel at
    (st*i, st*j).  Each lobe contributes float32(box sum) * weight, accumulated
    in template order as OpenCV does, so responses match bit for bit (see
    _filter_plan for the shared maps).  Octave 0 takes box sums from
    cv2.boxFilter over the rows the block needs (exact: every lobe sum is
    below 2**24); coarser octaves read the integral image on the octave's
    grid with strided views, allocating nothing full-size.
    """
    groups, terms = plan
    nb = i1 - i0
    maps = []
    for bw, bh, py, px, gy0, gx0, gy1, gx1, base in groups:
        rows = nb + gy1 - gy0
        cols = nc + gx1 - gx0
        y_top = st * (i0 + gy0) + py
        x_left = st * gx0 + px
        if st == 1:
            box = cv2.boxFilter(img[y_top:y_top + rows + bh - 1, x_left:x_left + cols + bw - 1],
                                cv2.CV_32F, (bw, bh), normalize=False, anchor=(0, 0),
                                borderType=cv2.BORDER_CONSTANT)[:rows, :cols]
            np.multiply(box, base, out=box)
        else:
            ii = integral
            ys0 = slice(y_top, y_top + st * (rows - 1) + 1, st)
            ys1 = slice(y_top + bh, y_top + bh + st * (rows - 1) + 1, st)
            xs0 = slice(x_left, x_left + st * (cols - 1) + 1, st)
            xs1 = slice(x_left + bw, x_left + bw + st * (cols - 1) + 1, st)
            s = ii[ys1, xs1] - ii[ys0, xs1]
            s -= ii[ys1, xs0]
            s += ii[ys0, xs0]
            box = np.multiply(s, base, dtype=_F32)
        maps.append(box)

    def view(term):
        gi, dy, dx, _ = term
        return maps[gi][dy:dy + nb, dx:dx + nc]

    first, rest = terms[0], list(terms[1:])
    if first[3] == 1 and rest:
        # The first two terms in one pass: t0 + k1*t1 has a single rounding
        # whichever way it is evaluated, as k1*t1 is exact.
        second = rest.pop(0)
        k = second[3]
        if k == 1:
            np.add(view(first), view(second), out=acc)
        elif k == -1:
            np.subtract(view(first), view(second), out=acc)
        else:
            cv2.scaleAdd(view(second), float(k), view(first), dst=acc)
    elif abs(first[3]) == 1 and rest and abs(rest[0][3]) != 1:
        # acc = k1*t1 (exact) then - t0: one pass fewer than -t0 + (k1*t1), same value.
        second = rest.pop(0)
        np.multiply(view(second), second[3], out=acc)
        np.subtract(acc, view(first), out=acc)
    else:
        np.multiply(view(first), first[3], out=acc)
    for term in rest:
        k = term[3]
        if k == 1:
            acc += view(term)
        elif k == -1:
            acc -= view(term)
        else:
            np.multiply(view(term), k, out=tmp)
            acc += tmp
    return acc


def _layer_det(img, integral, st, size, out):
    """Fill `out` ((H//st, W//st) float32) with the determinant map of filter side `size`.

    Cells where the filter does not fit in the image are 0.  Computed in row
    blocks so the temporaries stay in cache and small at any image size.
    """
    h, w = img.shape
    if size > h or size > w:
        out.fill(0)
        return
    nr = 1 + (h - size) // st
    nc = 1 + (w - size) // st
    m = (size // 2) // st
    out[:m].fill(0)
    out[m + nr:].fill(0)
    out[m:m + nr, :m].fill(0)
    out[m:m + nr, m + nc:].fill(0)
    plans = [_filter_plan(t, size, st) for t in (_DXX, _DYY, _DXY)]
    block = max(8, _DET_BLOCK // max(nc, 1))
    bufs = np.empty((4, min(block, nr), nc), _F32)
    for i0 in range(0, nr, block):
        i1 = min(nr, i0 + block)
        dxx, dyy, dxy, tmp = bufs[:, :i1 - i0]
        _filter_rows(img, integral, st, plans[0], i0, i1, nc, dxx, tmp)
        _filter_rows(img, integral, st, plans[1], i0, i1, nc, dyy, tmp)
        _filter_rows(img, integral, st, plans[2], i0, i1, nc, dxy, tmp)
        d = out[m + i0:m + i1, m:m + nc]
        np.multiply(dxx, dyy, out=d)
        dxy2 = np.multiply(dxy, _F32(0.81), out=dxx)
        dxy2 *= dxy
        d -= dxy2


def _trace_at(integral, st, size, r, c):
    """Trace (Dxx + Dyy, float32) of filter side `size` at octave cells (r, c)."""
    m = (size // 2) // st
    ty = st * (r - m)
    tx = st * (c - m)
    ii = integral
    res = []
    for lobes in (_scaled_lobes(_DXX, size), _scaled_lobes(_DYY, size)):
        acc = None
        for x0, y0, x1, y1, wt in lobes:
            s = (ii[ty + y1, tx + x1] - ii[ty + y0, tx + x1] - ii[ty + y1, tx + x0]
                 + ii[ty + y0, tx + x0])
            t = s.astype(_F32) * wt
            acc = t if acc is None else acc + t
        res.append(acc)
    return res[0] + res[1]


_NEIGHBOURS = [(dl, dy, dx) for dl in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
               if (dl, dy, dx) != (0, 0, 0)]


def _find_extrema(dets, sizes, layer, octave, threshold, integral, mask_integral):
    """Keypoint fields (dict of arrays) of the interpolated maxima of one middle layer.

    `dets` holds the determinant maps of layers layer-1, layer, layer+1.
    """
    st = 1 << octave
    lower, det, upper = dets
    rows, cols = det.shape
    size = sizes[layer]
    margin = (sizes[layer + 1] // 2) // st + 1
    if rows - margin <= margin or cols - margin <= margin:
        return None
    # Cheap pre-filter, in row blocks: above threshold and a (non-strict) 3x3
    # maximum in its own layer; the strict 26-neighbour test runs on the few
    # survivors.
    thr = _F32(threshold)
    block = max(8, _DET_BLOCK // cols)
    hits_r, hits_c = [], []
    for r0 in range(margin, rows - margin, block):
        r1 = min(rows - margin, r0 + block)
        # One extra row each side so the 3x3 dilation is exact on rows r0..r1-1.
        dil = cv2.dilate(det[r0 - 1:r1 + 1], None)[1:-1, margin:cols - margin]
        val = det[r0:r1, margin:cols - margin]
        # Whole-block calls (no GIL); findNonZero scans in np.nonzero's order.
        cand = cv2.compare(val, dil, cv2.CMP_GE)
        cv2.bitwise_and(cand, np.greater(val, thr).view(np.uint8), dst=cand)
        pts = cv2.findNonZero(cand)
        if pts is not None:
            pts = pts.reshape(-1, 2)
            hits_r.append(pts[:, 1].astype(np.intp) + r0)
            hits_c.append(pts[:, 0].astype(np.intp) + margin)
    if not hits_r:
        return None
    r = np.concatenate(hits_r)
    c = np.concatenate(hits_c)
    if r.size == 0:
        return None
    v = det[r, c]
    ok = np.ones(r.size, bool)
    n9 = {}
    maps = {-1: lower, 0: det, 1: upper}
    flat_idx = r * cols + c
    for dl, dy, dx in _NEIGHBOURS:
        nv = maps[dl].reshape(-1)[flat_idx + (dy * cols + dx)]
        n9[(dl, dy, dx)] = nv
        ok &= v > nv
    m = (size // 2) // st
    sum_i = st * (r - m)
    sum_j = st * (c - m)
    if mask_integral is not None:
        ok &= _mask_mean(mask_integral, sum_i, sum_j, size) >= 0.5
    if not ok.any():
        return None
    sel = np.nonzero(ok)[0]
    n9 = {k: a[sel] for k, a in n9.items()}
    n9[(0, 0, 0)] = v[sel]
    r, c, sum_i, sum_j = r[sel], c[sel], sum_i[sel], sum_j[sel]
    half = _F32(0.5)
    cy = sum_i.astype(_F32) + _F32(size - 1) * half
    cx = sum_j.astype(_F32) + _F32(size - 1) * half
    off, good = _interpolate(n9)
    if not good.any():
        return None
    x = cx + off[:, 0].astype(_F32) * _F32(st)
    y = cy + off[:, 1].astype(_F32) * _F32(st)
    new_size = np.rint(_F32(size) + off[:, 2].astype(_F32) * _F32(sizes[layer] - sizes[layer - 1]))
    tr = _trace_at(integral, st, size, r[good], c[good])
    cls = (tr > 0).astype(np.int32) - (tr < 0).astype(np.int32)
    return dict(x=x[good], y=y[good], size=new_size.astype(_F32)[good],
                response=n9[(0, 0, 0)][good],
                octave=np.full(int(good.sum()), octave, np.int32), class_id=cls)


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
    parts = []
    for octave in range(n_octaves):
        if (9 << octave) > min(h, w):
            break
        st = 1 << octave
        shape = (h // st, w // st)
        sizes = [(9 + 6 * layer) << octave for layer in range(n_layers + 2)]
        # Only three determinant maps are alive at a time: a middle layer is
        # searched as soon as the layer above it exists, then the lowest map's
        # buffer is reused.
        bufs = [np.empty(shape, _F32) for _ in range(3)]
        dets = []
        for layer, size in enumerate(sizes):
            out = bufs[layer % 3]
            _layer_det(img, integral, st, size, out)
            dets.append(out)
            if layer >= 2:
                found = _find_extrema(dets[-3:], sizes, layer - 1, octave, threshold,
                                      integral, mask_integral)
                if found is not None:
                    parts.append(found)
        del bufs, dets
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
    idx_t = np.int32 if integral.size < 2**31 else np.int64
    sx = np.rint((x[:, None] + _APT_X[None, :] * s[:, None]) - half[:, None]).astype(idx_t)
    sy = np.rint((y[:, None] + _APT_Y[None, :] * s[:, None]) - half[:, None]).astype(idx_t)
    lim_y = (hp1 - g).astype(idx_t)[:, None]
    lim_x = (wp1 - g).astype(idx_t)[:, None]
    valid = (sy >= 0) & (sy < lim_y) & (sx >= 0) & (sx < lim_x)
    base = sy
    base *= wp1
    base += sx
    base *= valid
    flat = integral.reshape(-1)

    def at(dy, dx):
        # Integral-image corner (dy, dx) of each sample's wavelet box.
        off = np.broadcast_to(dy * wp1 + dx, (n,)).astype(idx_t)[:, None]
        return np.take(flat, base + off, mode="clip")

    # 3x3 grid of integral corners covers both half-box Haar wavelets.  Box
    # sums are formed in the integral's integer type: exact even if an
    # intermediate wraps around, as every final sum is a small non-negative.
    c00, c01, c02 = at(0, 0), at(0, gh), at(0, g)
    c10, c12 = at(gh, 0), at(gh, g)
    c20, c21, c22 = at(g, 0), at(g, gh), at(g, g)
    wgt = (_F32(1) / (gh.astype(_F32) * g.astype(_F32)))[:, None]
    left = (c21 - c01 - c20 + c00).astype(_F32)
    right = (c22 - c02 - c21 + c01).astype(_F32)
    top = (c12 - c02 - c10 + c00).astype(_F32)
    bottom = (c22 - c12 - c20 + c10).astype(_F32)
    # Samples whose wavelet leaves the image weigh nothing (their angle is
    # then atan2(0, 0) = 0, which adds zeros to one bin).
    wv = _APT_W[None, :] * valid
    gx = left * (-wgt)
    gx += right * wgt
    gx *= wv
    gy = top * wgt
    gy += bottom * (-wgt)
    gy *= wv
    ang = np.rint(_fast_atan2_deg(gy, gx)).astype(np.intp)
    # A window at a = 5m holds the integer angles a-29..a+29, i.e. the coarse
    # bins R_q = {5q+1, ..., 5q+5} for q = m-6..m+5 minus the angle 5(m+6).
    nb = 360 // _ORI_STEP
    row = (np.arange(n) * nb)[:, None]
    coarse = np.take(_ORI_COARSE, ang)
    coarse += row
    exact = np.take(_ORI_EXACT, ang)
    exact += row
    on_step = np.take(_ORI_ON_STEP, ang)
    span = 2 * _ORI_WIN_HALF // _ORI_STEP
    lead = _ORI_WIN_HALF // _ORI_STEP

    def window_sums(v):
        r = np.bincount(coarse.ravel(), v.ravel(), n * nb).reshape(n, nb)
        e = np.bincount(exact.ravel(), (v * on_step).ravel(), n * nb).reshape(n, nb)
        padded = np.zeros((n, nb + span + 1))
        np.cumsum(np.concatenate([r[:, nb - lead:], r, r[:, :span - lead]], axis=1),
                  axis=1, out=padded[:, 1:])
        sums = padded[:, span:span + nb] - padded[:, :nb]
        sums -= np.roll(e, -lead, axis=1)
        return sums.astype(_F32)

    wx, wy = window_sums(gx), window_sums(gy)
    mod = wx * wx + wy * wy
    best = np.argmax(mod, axis=1)
    bx = wx[np.arange(n), best]
    by = wy[np.arange(n), best]
    angle = _fast_atan2_deg(-by, bx)
    return angle, valid.any(axis=1)


def _orientation_bins():
    ang = np.arange(361)
    coarse = ((ang - 1) % 360) // _ORI_STEP
    exact = (ang // _ORI_STEP) % (360 // _ORI_STEP)
    on_step = ((ang % _ORI_STEP) == 0).astype(_F32)
    return coarse.astype(np.intp), exact.astype(np.intp), on_step


_ORI_COARSE, _ORI_EXACT, _ORI_ON_STEP = _orientation_bins()


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


def _remap_is_exact():
    """Whether cv2.remap's bilinear mode interpolates with float weights.

    OpenCV 4.11+ does; older builds quantise sub-pixel positions to 1/32 px,
    which is too coarse for OpenCV SURF's descriptors.  Checked once against a
    plain float32 bilinear interpolation of random data at random positions,
    and at pixel centres, where the border samples rely on getting the pixel.
    """
    global _REMAP_EXACT
    if _REMAP_EXACT is None:
        rng = np.random.default_rng(12345)
        img = rng.integers(0, 256, (40, 40), dtype=np.uint8)
        px = rng.uniform(1, 37, (64, 64)).astype(_F32)
        py = rng.uniform(1, 37, (64, 64)).astype(_F32)
        ix = np.floor(px).astype(np.intp)
        iy = np.floor(py).astype(np.intp)
        a = px - ix
        b = py - iy
        f = img.astype(_F32)
        ref = np.rint(f[iy, ix] * (1 - a) * (1 - b) + f[iy, ix + 1] * a * (1 - b)
                      + f[iy + 1, ix] * (1 - a) * b + f[iy + 1, ix + 1] * a * b)
        # Border samples are moved onto pixel centres, the last row and
        # column included, where bilinear must return the pixel itself.
        qx = rng.integers(0, 40, (64, 64))
        qy = rng.integers(0, 40, (64, 64))
        qx[:, :4], qy[:4] = 39, 39
        try:
            got = cv2.remap(img, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            centre = cv2.remap(img, qx.astype(_F32), qy.astype(_F32), cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
            ok = (np.mean(got != ref) < 0.01 and np.abs(got.astype(_F32) - ref).max() <= 1
                  and np.array_equal(centre, img[qy, qx]))
        except cv2.error:
            ok = False
        _REMAP_EXACT = bool(ok)
    return _REMAP_EXACT


_REMAP_EXACT = None


def _area_resize_stack(stack, k, exact=False):
    """INTER_AREA resize of k stacked w x w windows ((k*w, w) uint8) to (k, 21, 21).

    Window boundaries fall on output row boundaries (k*w rows -> k*21 rows),
    so one call gives exactly the per-window results.  A side that is not a
    multiple of 21 is averaged as A @ window @ A.T with A the (21, w) matrix
    of area weights, in float32 as OpenCV's general area resize is (BLAS:
    the whole of SURF then takes 0.8-0.9 of the time on dense 700 x 700
    images). The sums' order differs from OpenCV's, so about one output in
    ten thousand rounds the other way by one level: against OpenCV's SURF
    97.4-99.0% of descriptors stay within 1e-3 (was 98.4-100%) and
    99.7-100% within 1e-2 (was 100%). Multiples of 21 keep
    OpenCV's own fast path, which rounds halves up in integers (at w = 42,
    13% of outputs would differ).  ``exact`` keeps OpenCV's resize for every
    side: upright descriptors, sampled without interpolation, match
    OpenCV's to 1e-7, and one output rounded the other way would show.
    """
    side = _PATCH + 1
    w = stack.shape[1]
    if exact or w % side == 0:
        if w == side:  # already 21 x 21: resizing would copy it
            return stack.reshape(k, side, side)
        out = cv2.resize(stack, (side, k * side), interpolation=cv2.INTER_AREA)
        return out.reshape(k, side, side)
    weights, weights_t = _area_weights(w)
    windows = stack.reshape(k, w, w).astype(_F32)
    # Rows first, then columns, as OpenCV sums them: fewer outputs round
    # the other way than the other order (1.0e-4 against 1.3e-4).
    out = _matmul_one_thread(weights, _matmul_one_thread(windows, weights_t))
    return np.rint(out, out=out).astype(np.uint8)


def _matmul_one_thread(left, right):
    """``left @ right`` (float32) in row or column blocks small enough for
    OpenBLAS to run each on one thread: on windows of 300 px its threads
    doubled the CPU for the same wall time, and the server's own threads
    and processes already fill the cores. Each output is the same dot
    product either way."""
    m, inner = left.shape[-2:]
    n = right.shape[-1]
    if m * n * inner <= _GEMM_ONE_THREAD:
        return np.matmul(left, right)
    out = np.empty(np.broadcast_shapes(left.shape[:-2], right.shape[:-2]) + (m, n), _F32)
    if m >= n:
        step = max(1, _GEMM_ONE_THREAD // (n * inner))
        for lo in range(0, m, step):
            np.matmul(left[..., lo:lo + step, :], right, out=out[..., lo:lo + step, :])
    else:
        step = max(1, _GEMM_ONE_THREAD // (m * inner))
        for lo in range(0, n, step):
            np.matmul(left, right[..., lo:lo + step], out=out[..., lo:lo + step])
    return out


@functools.lru_cache(maxsize=1024)
def _area_weights(w):
    """(21, w) float32 area weights and their transpose: output i averages
    source pixels over [i w/21, (i+1) w/21), each by the part it covers."""
    side = _PATCH + 1
    edges = np.arange(side + 1, dtype=np.float64) * (w / side)
    pixels = np.arange(w, dtype=np.float64)
    cover = np.clip(np.minimum(edges[1:, None], pixels + 1) - np.maximum(edges[:-1, None], pixels), 0, None)
    weights = (cover * (side / w)).astype(_F32)
    weights.setflags(write=False)
    transposed = np.ascontiguousarray(weights.T)
    transposed.setflags(write=False)
    return weights, transposed


def _window_groups(win, first, budget=None):
    """Yield (w, indices) per window side, chunked to bound the temporaries.

    Within a group, indices flagged in `first` come first (so they form a prefix).
    """
    order = np.lexsort((~first, win))
    sw = win[order]
    bounds = np.flatnonzero(np.diff(sw)) + 1
    for grp in np.split(order, bounds):
        if grp.size == 0:
            continue
        w = int(win[grp[0]])
        per = max(1, min((budget or _SAMPLE_CHUNK) // (w * w), _MAX_STACK_ROWS // w))
        for lo in range(0, grp.size, per):
            yield w, grp[lo:lo + per]


def _windows_oriented(img, x, y, size, angle, win):
    """Sample each keypoint's w x w rotated window and area-resize it to 21 x 21.

    Windows are sampled by cv2.remap with float32 maps (float bilinear
    weights), in bands of about _BAND samples: several whole windows of one
    side per band, or a window's rows in several bands when it is larger
    (band size: see _BAND).  The maps reproduce OpenCV SURF's
    positions: row starts accumulated in float32, offsets along a row computed
    in double (then float32).  Samples outside the interpolation domain take
    the nearest clamped pixel, as in OpenCV SURF (_clamp_outside); only
    border windows pay for that, and a large window only in the column strips
    of its bands that can reach out.
    """
    h, w_img = img.shape
    n = x.size
    patches = np.empty((n, _PATCH + 1, _PATCH + 1), np.uint8)
    rad = angle * _F32(math.pi / 180)
    sin_dir = -np.sin(rad.astype(np.float64)).astype(_F32)
    cos_dir = np.cos(rad.astype(np.float64)).astype(_F32)
    off = -(win - 1).astype(_F32) / _F32(2)
    start_x = (x + off * cos_dir) + off * sin_dir
    start_y = (y - off * sin_dir) + off * cos_dir
    if not _remap_is_exact() or max(h, w_img) >= _MAX_STACK_ROWS:
        for w, g in _window_groups(win, np.zeros(n, bool), _SAMPLE_CHUNK // 8):
            wnds = _windows_exact(img, start_x[g], start_y[g], cos_dir[g], sin_dir[g], w)
            patches[g] = _area_resize_stack(wnds.reshape(-1, w), g.size)
        return patches
    # Windows whose corners all lie safely inside need no border handling.
    last = (win - 1).astype(np.float64)
    sx64, sy64 = start_x.astype(np.float64), start_y.astype(np.float64)
    s64, c64 = sin_dir.astype(np.float64), cos_dir.astype(np.float64)
    touches = np.zeros(n, bool)
    # On an image whose frame holds one value, every sample off it reads
    # that value both ways: OpenCV's nearest clamped pixel, and remap's
    # bilinear over replicated border pixels. The moon pipeline's canvases
    # are such images (their disk on one grey): no window needs the clamp.
    if not _constant_frame(img):
        for ci, cj in ((0, 0), (0, 1), (1, 0), (1, 1)):
            cx = sx64 + ci * last * s64 + cj * last * c64
            cy = sy64 + ci * last * c64 - cj * last * s64
            touches |= (cx < 0.25) | (cx > w_img - 1.25) | (cy < 0.25) | (cy > h - 1.25)
    # One set of buffers for every band: fresh temporaries per band would
    # cost a page fault per 4 KiB each time.
    w_max = int(win.max())
    cap = max(_BAND, w_max) + _REMAP_ROW
    buf_xy = np.empty((2, cap), _F32)
    buf_x, buf_y = buf_xy
    starts = np.stack([start_x, start_y])
    dirs = np.stack([sin_dir, cos_dir])
    col_dirs = np.stack([c64, -s64])
    scratch = np.empty(cap, _F32)
    buf_w = np.empty(max(_BAND, w_max * w_max) + _REMAP_ROW, np.uint8)
    # Largest float32 strictly below side - 1: inRange bounds are inclusive.
    x_hi = float(np.nextafter(_F32(w_img - 1), _F32(-np.inf)))
    y_hi = float(np.nextafter(_F32(h - 1), _F32(-np.inf)))
    for w, g in _window_groups(win, touches, _BAND):
        k = g.size
        # x and y side by side in one array each ([0] x, [1] y), so every
        # step below is one call for both: fewer short calls holding the GIL.
        steps = np.empty((2, k, w), _F32)
        steps[:, :, 0] = starts[:, g]
        steps[:, :, 1:] = dirs[:, g, None]
        # map = row start + column offset, as the product [row, 1] @ [1; col]
        # (exact: both products are by one, and one rounding of the sum
        # remains); BLAS writes it about three times faster than NumPy's
        # broadcast add, whose inner loop is only one window row long.
        lhs = np.ones((2, k, w, 2), _F32)
        # Row starts accumulate in float32, as OpenCV SURF's loop does.
        np.cumsum(steps, axis=2, dtype=_F32, out=lhs[:, :, :, 0])
        rhs = np.ones((2, k, 2, w), _F32)
        # Column offsets j*cos and -(j*sin) in double, then float32.
        rhs[:, :, 1] = np.arange(w, dtype=np.float64) * col_dirs[:, g, None]
        wnds = buf_w[:k * w * w].reshape(k, w, w)
        # Border windows come first in a group, so in a band of several
        # windows their rows are a prefix.
        n_touch = int(np.count_nonzero(touches[g]))
        rows = max(1, _BAND // w) if k == 1 else w
        band_starts = range(0, w, rows)
        if n_touch and k == 1:
            # A window larger than a band: per row, the columns surely inside
            # the bilinear domain; only the strips left and right of those
            # columns in a band are checked sample by sample.
            q = int(g[0])
            safe_lo, safe_hi = _safe_columns(sx64[q], sy64[q], s64[q], c64[q], w, h, w_img)
        for i0 in band_starts:
            i1 = min(w, i0 + rows)
            nr = i1 - i0
            cnt = k * nr * w
            np.matmul(lhs[:, :, i0:i1], rhs, out=buf_xy[:, :cnt].reshape(2, k, nr, w))
            map_x = buf_x[:cnt].reshape(k * nr, w)
            map_y = buf_y[:cnt].reshape(k * nr, w)
            # Samples whose 2 x 2 neighbourhood leaves the image are moved
            # onto their nearest clamped pixel first (see _clamp_outside):
            # only border windows, and in a large window only the column
            # strips outside its surely-inside columns, are examined.
            if n_touch and k == 1:
                c0 = min(w, int(safe_lo[i0:i1].max()))
                c1 = max(c0, int(safe_hi[i0:i1].min()))
                for a, z in ((0, c0), (c1, w)):
                    if z > a:
                        _clamp_outside(map_x[:, a:z], map_y[:, a:z], x_hi, y_hi, w_img, h,
                                       scratch)
            elif n_touch:
                t_rows = n_touch * nr
                _clamp_outside(map_x[:t_rows], map_y[:t_rows], x_hi, y_hi, w_img, h, scratch)
            # remap is per sample, so the band is remapped as rows of
            # _REMAP_ROW samples (padded with valid positions): its SIMD loop
            # then runs on long rows instead of one short window row at a time.
            row = min(cnt, _REMAP_ROW)
            padded = -(-cnt // row) * row
            buf_xy[:, cnt:padded] = 0
            start = i0 * w  # the band's offset in the window buffer
            cv2.remap(img, buf_x[:padded].reshape(-1, row), buf_y[:padded].reshape(-1, row),
                      cv2.INTER_LINEAR, dst=buf_w[start:start + padded].reshape(-1, row),
                      borderMode=cv2.BORDER_REPLICATE)
        patches[g] = _area_resize_stack(wnds.reshape(k * w, w), k)
    return patches


def _constant_frame(img):
    """Whether the image's outermost rows and columns all hold one value."""
    v = img[0, 0]
    return bool((img[0] == v).all() and (img[-1] == v).all() and (img[:, 0] == v).all() and (img[:, -1] == v).all())


def _safe_columns(sx, sy, s, c, w, h, w_img):
    """Per row of one window, the half-open column range [lo, hi) surely inside the bilinear domain.

    Row i samples x = sx + i*s + j*c, y = sy + i*c - j*s; each coordinate is
    affine in j, so the columns keeping it in range form an interval.  A
    quarter pixel to spare covers the float32 rounding of the maps.
    """
    i = np.arange(w, dtype=np.float64)
    lo = np.zeros(w)
    hi = np.full(w, w - 1.0)
    for p, slope, side in ((sx + i * s, c, w_img), (sy + i * c, -s, h)):
        a, z = 0.25 - p, side - 1.25 - p
        if slope != 0:
            a, z = a / slope, z / slope
            if slope < 0:
                a, z = z, a
            lo = np.maximum(lo, a)
            hi = np.minimum(hi, z)
        else:
            # Constant along the row: all columns or none.
            none = (a > 0) | (z < 0)
            hi = np.where(none, -1.0, hi)
    lo = np.clip(np.ceil(lo), 0, w)
    hi = np.clip(np.floor(hi) + 1, lo, w)
    return lo.astype(np.int64), hi.astype(np.int64)


def _clamp_outside(map_x, map_y, x_hi, y_hi, w_img, h, scratch):
    """Move map entries whose floor(x) or floor(y) leaves [0, side - 1) onto the nearest clamped pixel.

    OpenCV SURF takes that pixel for samples whose 2 x 2 neighbourhood leaves
    the image; bilinear interpolation at a pixel's centre returns the pixel
    itself, so one remap then serves border and interior samples alike (and
    stays on remap's fast in-image path).  The maps may be column strips of
    the band's maps; they are changed in place.
    """
    outside = cv2.inRange(map_x, 0.0, x_hi)
    cv2.bitwise_and(outside, cv2.inRange(map_y, 0.0, y_hi), dst=outside)
    cv2.bitwise_not(outside, dst=outside)
    if not cv2.countNonZero(outside):
        return
    rows, cols = map_x.shape
    near = scratch[:rows * cols].reshape(rows, cols)
    for m, side in ((map_x, w_img), (map_y, h)):
        np.rint(m, out=near)
        np.clip(near, 0, side - 1, out=near)
        got = cv2.copyTo(near, outside, m)
        if not np.shares_memory(got, m):  # pragma: no cover - a binding that copied
            m[...] = got


def _windows_upright(img, x, y, win):
    h, w_img = img.shape
    n = x.size
    patches = np.empty((n, _PATCH + 1, _PATCH + 1), np.uint8)
    off = -(win - 1).astype(_F32) / _F32(2)
    x0 = np.rint(x + off).astype(np.int64)
    y0 = np.rint(y - off).astype(np.int64)
    flat = img.reshape(-1)
    for w, g in _window_groups(win, np.zeros(n, bool)):
        # Patch row i runs along +x, column j along -y: the 270 degree frame.
        ar = np.arange(w)
        cols = np.clip(x0[g, None] + ar, 0, w_img - 1)
        rows = np.clip(y0[g, None] - ar, 0, h - 1) * w_img
        wnds = flat[rows[:, None, :] + cols[:, :, None]]
        patches[g] = _area_resize_stack(wnds.reshape(-1, w), g.size, exact=True)
    return patches


def _block_pooling():
    """(400, 16) 0/1 matrix summing the 20 x 20 grid into 4 x 4 blocks of 5 x 5, row-major."""
    i = np.arange(_PATCH)
    block = (i[:, None] // 5) * 4 + (i[None, :] // 5)
    return (block.reshape(-1, 1) == np.arange(16)[None, :]).astype(_F32)


_POOL = _block_pooling()
_DESC_CHUNK = 256


def _descriptors_from_patches(patches, extended):
    n = patches.shape[0]
    dim = 128 if extended else 64
    out = np.empty((n, dim), _F32)
    for lo in range(0, n, _DESC_CHUNK):
        p = patches[lo:lo + _DESC_CHUNK].astype(np.int16)
        k = p.shape[0]
        diag = p[:, 1:, 1:] - p[:, :-1, :-1]   # P[i+1, j+1] - P[i, j]
        anti = p[:, :-1, 1:] - p[:, 1:, :-1]   # P[i, j+1] - P[i+1, j]
        dx = (diag + anti).astype(_F32)
        dx *= _DESC_W
        dy = (diag - anti).astype(_F32)
        dy *= _DESC_W
        dx = dx.reshape(k, -1)
        dy = dy.reshape(k, -1)
        if extended:
            ypos = (dy >= 0).astype(_F32)
            xpos = (dx >= 0).astype(_F32)
            adx, ady = np.abs(dx), np.abs(dy)
            dx_p, adx_p = dx * ypos, adx * ypos
            dy_p, ady_p = dy * xpos, ady * xpos
            feats = [dx_p, adx_p, dx - dx_p, adx - adx_p, dy_p, ady_p, dy - dy_p, ady - ady_p]
        else:
            feats = [dx, dy, np.abs(dx), np.abs(dy)]
        # (k, f, 400) @ (400, 16) -> (k, f, 16) -> per block [f0, f1, ...].
        vec = np.matmul(np.stack(feats, axis=1), _POOL).transpose(0, 2, 1).reshape(k, -1)
        norm = np.sqrt(np.einsum("ij,ij->i", vec, vec, dtype=np.float64))
        scale = (1.0 / (norm + np.finfo(np.float32).eps)).astype(_F32)
        out[lo:lo + k] = vec * scale[:, None]
    return out


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
        self.maxKeypointSize = 0.0

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

    # moontrek's own, not OpenCV's: detected keypoints larger than this
    # (KeyPoint.size) are dropped before their orientation and descriptor
    # are computed; 0 keeps every size. Keypoints passed in are all kept.
    def getMaxKeypointSize(self):
        return self.maxKeypointSize

    def setMaxKeypointSize(self, value):
        self.maxKeypointSize = float(value)

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

    def detect_and_compute_columns(self, image, mask=None):
        """moontrek's own: detectAndCompute's answer with the keypoints as
        arrays (x, y, size, angle, response, octave, class_id), which pickle
        (cv2.KeyPoint does not); :func:`keypoints_from_columns` makes them
        KeyPoints again, exactly as detectAndCompute would have."""
        return self._run_columns(image, mask, None, with_descriptors=True)

    def _empty_result(self):
        columns = tuple(np.zeros(0, dtype) for dtype in (_F32,) * 5 + (np.int32,) * 2)
        return columns, np.zeros((0, self.descriptorSize()), _F32)

    def _run(self, image, mask, provided, with_descriptors):
        columns, desc = self._run_columns(image, mask, provided, with_descriptors)
        return keypoints_from_columns(columns), desc

    def _run_columns(self, image, mask, provided, with_descriptors):
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
        if self.maxKeypointSize and provided is None:
            keep &= size <= self.maxKeypointSize
        s = size * _F32(1.2) / _F32(9)
        g = 2 * np.rint(_F32(2) * s)
        keep &= (g <= integral.shape[0]) & (g <= integral.shape[1])
        angle = np.full(x.size, 270.0, _F32)
        if not self.upright:
            for lo in range(0, x.size, _ORI_CHUNK):
                sl = slice(lo, lo + _ORI_CHUNK)
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
        columns = (x, y, size, out_angle, kp["response"][idx], kp["octave"][idx], kp["class_id"][idx])
        return columns, desc


def keypoints_from_columns(columns):
    """cv2.KeyPoints from the arrays (x, y, size, angle, response, octave,
    class_id) of :meth:`SURF.detect_and_compute_columns`."""
    return [cv2.KeyPoint(*fields) for fields in zip(*(column.tolist() for column in columns))]


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
