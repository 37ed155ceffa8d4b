"""A fast path for the PNG files browsers write: 8-bit RGB or RGBA, not
interlaced, every row filtered with None, Sub or Up.

The Moon-Trek client's renders are 2000 x 2000 RGBA PNGs from the browser's
canvas encoder, which filters every row alike (the demo renders: Sub; the
Chromium 156 here: Up; tests/test_page.py checks the browser's own PNGs
take this path). libpng, behind ``cv2.imdecode``, inflates them with zlib
and unfilters row by row: ~40 ms of CPU a render, most of a fast
registration. Here libdeflate inflates the whole stream at once into a
buffer of the size the header states (2-3x zlib's speed), and the filters
are undone with whole-array operations: Up is a running sum down the
columns modulo 256, Sub one along each row (down the columns of the
transposed image), both in blocks of rows (``_scan``). Together ~13-22 ms,
in some hundred calls that release the GIL (not thousands: under load each
one waits to get it back).

Anything else (other filters, bit depths, palettes, grey, transparency keys,
interlacing, animation, an EXIF orientation) is left to OpenCV: ``decode``
returns None for it, as it does for a file that is damaged in any way, so
that OpenCV's decoder gives the error.
"""

import math
import struct
import zlib

import cv2
import deflate
import numpy as np

__all__ = ["decode"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {2: 3, 6: 4}  # colour type -> channels: RGB, RGBA
# Chunks that change the decoded pixels or their orientation in ways this
# path does not reproduce: leave those files to libpng.
_DECLINED = {b"tRNS", b"eXIf", b"acTL", b"fcTL", b"fdAT", b"PLTE"}
_NONE, _SUB, _UP = 0, 1, 2
# Rows inflated first to see the filters: an encoder that chooses a filter
# per row (libpng's default) shows Average or Paeth among the first rows,
# and then the whole inflate is saved.
_PEEK_ROWS = 64
_PEEK_SLICE = 1 << 16


def decode(data):
    """The pixels of a PNG file, 8-bit RGB or RGBA in the file's channel
    order (OpenCV's ``imdecode(IMREAD_UNCHANGED)`` gives the same with R and
    B swapped), or None when the file is not one this path decodes exactly."""
    header = _read_chunks(data)
    if header is None:
        return None
    width, height, channels, stream = header
    del header
    stride = 1 + width * channels
    if not _filters_supported(_peek(stream, stride * min(height, _PEEK_ROWS)), stride):
        return None
    try:
        raw = deflate.zlib_decompress(stream, stride * height)
    except Exception:  # libdeflate's DeflateError, or a size it refuses
        return None
    if len(raw) != stride * height:
        return None
    del stream
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, stride)
    filters = rows[:, 0].copy()
    if filters.max() > _UP:
        return None
    pixels = rows[:, 1:].reshape(height, width, channels)
    del rows
    if channels == 4 and width > 1 and (filters == _SUB).all():
        # The browser's render. The inflated stream goes as soon as its
        # transposed copy exists: at most two images' worth at any time,
        # what libpng's decode and the conversion after it hold.
        columns = cv2.transpose(pixels)
        del pixels, raw
        return _sums_down_columns(columns)
    return _unfilter(pixels, filters)


def _read_chunks(data):
    """(width, height, channels, the joined IDAT data) of a PNG this path
    takes, every chunk's CRC checked; None otherwise."""
    if not data.startswith(_SIGNATURE):
        return None
    offset, end = len(_SIGNATURE), len(data)
    header, parts = None, []
    # Views, not copies: the IDAT bodies are copied once, joined.
    view = memoryview(data)
    while offset + 12 <= end:
        length, kind = struct.unpack_from(">I4s", data, offset)
        stop = offset + 8 + length
        if stop + 4 > end:
            return None
        body = view[offset + 8 : stop]
        (crc,) = struct.unpack_from(">I", data, stop)
        # libdeflate's CRC keeps the GIL, for a fifth of zlib's time: zlib's
        # gives it up for every chunk over 5 kB (a render has hundreds of
        # 8 kB chunks), and beside a busy thread each hand-back waits.
        if deflate.crc32(body, deflate.crc32(kind)) != crc:
            return None
        if header is None:
            if kind != b"IHDR" or length != 13:
                return None
            width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or colour not in _CHANNELS or compression or filtering or interlace:
                return None
            if not width or not height:
                return None
            header = (width, height, _CHANNELS[colour])
        elif kind == b"IDAT":
            parts.append(body)
        elif kind == b"IEND":
            return (*header, b"".join(parts)) if parts else None
        elif kind in _DECLINED:
            return None
        offset = stop + 4
    return None


def _peek(stream, size):
    """The first ``size`` bytes the stream inflates to (fewer if it ends).
    Fed in slices: given the whole stream, zlib keeps a copy of the part it
    did not read (megabytes, copied while holding the GIL)."""
    inflater, out, view = zlib.decompressobj(), [], memoryview(stream)
    try:
        for start in range(0, len(stream), _PEEK_SLICE):
            out.append(inflater.decompress(inflater.unconsumed_tail + view[start : start + _PEEK_SLICE], size))
            size -= len(out[-1])
            if size <= 0 or inflater.eof:
                break
    except zlib.error:
        return b""
    return b"".join(out)


def _filters_supported(start, stride):
    if not start:
        return False
    return all(start[i] <= _UP for i in range(0, len(start), stride))


def _unfilter(pixels, filters):
    """Undo the None, Sub and Up filters of ``pixels`` (rows x width x
    channels, the filter byte removed) into a new array."""
    if (filters == _SUB).all():
        return _running_sums(pixels)
    if (filters == _UP).all():
        # Chromium's canvas encoder: each row plus every row above it.
        return _scan(pixels, np.empty(pixels.shape, dtype=np.uint8))
    image = np.empty(pixels.shape, dtype=np.uint8)
    sub = filters == _SUB
    if sub.any():
        image[sub] = _running_sums(pixels[sub])
    plain = filters == _NONE
    image[plain] = pixels[plain]
    # Up adds the row above as decoded, so these go in order, after the
    # rows they may build on; row 0's "above" is zeros.
    for y in np.flatnonzero(filters == _UP):
        if y == 0:
            image[0] = pixels[0]
        else:
            np.add(pixels[y], image[y - 1], out=image[y])
    return image


def _running_sums(pixels):
    """Each row's running sum of its pixels, per channel, modulo 256: the
    Sub filter undone.

    NumPy's cumsum along the rows of 4-channel pixels runs a scalar loop per
    row and channel (~16 ms for 2000 x 2000); transposed, the same sums run
    down the columns, whole columns of pixels added at a time (with the two
    transposes, OpenCV's, on the 4-byte pixels, about half the time). For
    3 channels NumPy's own loop is the faster.
    """
    if pixels.shape[2] != 4 or pixels.shape[1] < 2:
        return np.cumsum(pixels, axis=1, dtype=np.uint8)
    return _sums_down_columns(cv2.transpose(pixels))


def _sums_down_columns(columns):
    """_running_sums of the pixels whose transpose is ``columns`` (which it
    overwrites), transposed back."""
    return cv2.transpose(_scan(columns, columns))


def _scan(source, out):
    """Running sums, modulo 256, down the first axis of ``source``, written
    to ``out`` (C-contiguous, of the same shape; it may be ``source``).

    Summing row after row is one NumPy call per row, and each call gives the
    GIL up and must get it back: beside a thread running Python that wait is
    up to the interpreter's switch interval (5 ms), and 2000 rows took
    seconds. In blocks of about the square root of the row count it is some
    90 calls for 2000 rows, most over many rows at once: running sums
    within every block together, then down the blocks' last rows, then those
    added to the rows of the block after. Exact: addition modulo 256 is
    associative."""
    count = len(source)
    block = max(1, math.isqrt(count))
    blocks = count // block
    whole = blocks * block
    src = source[:whole].reshape(blocks, block, -1)
    dst = out[:whole].reshape(blocks, block, -1)
    if out is not source:
        dst[:, 0] = src[:, 0]
    for k in range(1, block):
        np.add(src[:, k], dst[:, k - 1], out=dst[:, k])
    ends = dst[:, -1]
    for j in range(1, blocks):
        np.add(ends[j], ends[j - 1], out=ends[j])
    np.add(dst[1:, :-1], ends[:-1, None], out=dst[1:, :-1])
    for y in range(whole, count):
        np.add(source[y], out[y - 1], out=out[y])
    return out
