"""The fast PNG path gives exactly what OpenCV's decoder gives, or declines."""

import struct
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moontrek.registration import png
from moontrek.registration.errors import ImageError
from moontrek.registration.images import decode_image


def _chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))


def _filter_row(row, previous, kind, channels):
    """Encode one row (bytes of RGB(A) pixels) with a PNG filter."""
    row = row.astype(np.int16)
    if kind == 0:
        out = row
    elif kind == 1:  # Sub: minus the pixel to the left
        left = np.concatenate([np.zeros(channels, np.int16), row[:-channels]])
        out = row - left
    elif kind == 2:  # Up: minus the pixel above
        out = row - previous.astype(np.int16)
    elif kind == 4:  # Paeth: minus the nearest of left, above, upper left
        up = previous.astype(np.int16)
        left = np.concatenate([np.zeros(channels, np.int16), row[:-channels]])
        corner = np.concatenate([np.zeros(channels, np.int16), up[:-channels]])
        estimate = left + up - corner
        pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
        predictor = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, corner))
        out = row - predictor
    return bytes([kind]) + (out % 256).astype(np.uint8).tobytes()


def encode_png(rgb, filters, *, extra_chunks=(), level=6, depth=8):
    """A PNG of ``rgb`` (rows x width x 3 or 4, RGB order) with the given
    filter per row, written by hand: OpenCV's and Pillow's encoders choose
    their own filters."""
    height, width, channels = rgb.shape
    colour = {3: 2, 4: 6}[channels]
    raw = b""
    previous = np.zeros(width * channels, np.uint8)
    for y in range(height):
        row = rgb[y].reshape(-1)
        raw += _filter_row(row, previous, filters[y % len(filters)], channels)
        previous = row
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    stream = zlib.compress(raw, level)
    # Split the stream over several IDAT chunks, as browsers do.
    idats = [_chunk(b"IDAT", stream[i : i + 1000]) for i in range(0, len(stream), 1000)]
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + b"".join(_chunk(k, b) for k, b in extra_chunks)
        + b"".join(idats) + _chunk(b"IEND", b"")
    )


def opencv(data):
    """What OpenCV decodes, in RGB(A) order as png.decode gives it."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return image[..., [2, 1, 0, 3][: image.shape[2]]]


def image(seed, height, width, channels):
    rng = np.random.default_rng(seed)
    # Smooth regions (where Sub and Up matter) and noise (where wrapping does).
    base = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    base[: height // 2] //= 7
    return base


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("filters", [[1], [0], [2], [1, 2, 0], [2, 2, 1], [0, 1]])
def test_same_pixels_as_opencv(channels, filters):
    rgb = image(3, 37, 53, channels)
    data = encode_png(rgb, filters)
    decoded = png.decode(data)
    assert decoded is not None
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, opencv(data))


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    channels=st.sampled_from([3, 4]),
    filters=st.lists(st.sampled_from([0, 1, 2]), min_size=1, max_size=5),
    seed=st.integers(0, 2**16),
)
def test_any_size_and_filter_mix(height, width, channels, filters, seed):
    data = encode_png(image(seed, height, width, channels), filters)
    np.testing.assert_array_equal(png.decode(data), opencv(data))


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("filters", [[1], [2]])
@pytest.mark.parametrize("height, width", [(97, 130), (130, 97), (144, 61), (2, 300), (300, 2)])
def test_larger_images_one_filter_throughout(height, width, channels, filters):
    # The browser's images: one filter on every row, undone in blocks of
    # about the square root of the row (or column) count plus the rows left
    # over: 97 and 130 leave some, 144 none.
    data = encode_png(image(height + width, height, width, channels), filters)
    np.testing.assert_array_equal(png.decode(data), opencv(data))


def test_paeth_is_left_to_opencv():
    rgb = image(1, 20, 20, 3)
    data = encode_png(rgb, [1, 4])
    assert png.decode(data) is None
    np.testing.assert_array_equal(decode_image(data), opencv(data)[..., ::-1])


@pytest.mark.parametrize("kind", [b"tRNS", b"eXIf"])
def test_chunks_that_change_pixels_are_left_to_opencv(kind):
    body = b"\x00\x00\x00\x00\x00\x00" if kind == b"tRNS" else b"MM\x00*\x00\x00\x00\x08\x00\x00"
    data = encode_png(image(2, 10, 10, 3), [1], extra_chunks=[(kind, body)])
    assert png.decode(data) is None


def test_sixteen_bits_are_left_to_opencv():
    data = cv2.imencode(".png", np.full((20, 20, 3), 40000, np.uint16))[1].tobytes()
    assert png.decode(data) is None
    assert decode_image(data).dtype == np.uint8


def test_a_bad_crc_is_refused_as_opencv_refuses_it():
    data = bytearray(encode_png(image(4, 30, 30, 4), [1]))
    start = data.index(b"IDAT") + 10
    data[start] ^= 0xFF
    assert png.decode(bytes(data)) is None
    with pytest.raises(ImageError):
        decode_image(bytes(data))


@pytest.mark.parametrize("cut", [0.3, 0.7, 0.99])
def test_a_truncated_file_is_declined(cut):
    data = encode_png(image(5, 30, 30, 3), [1])
    assert png.decode(data[: int(len(data) * cut)]) is None


def test_a_stream_shorter_than_the_header_says_is_declined():
    rgb = image(6, 20, 20, 3)
    data = encode_png(rgb, [1])
    # The same stream under a header claiming one row more.
    header = struct.pack(">IIBBBBB", 20, 21, 8, 2, 0, 0, 0)
    start = 8
    liar = data[:start] + _chunk(b"IHDR", header) + data[start + 25 :]
    assert png.decode(liar) is None
    with pytest.raises(ImageError):
        decode_image(liar)


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("keep_alpha", [False, True])
def test_decode_image_is_the_same_whichever_decoder_runs(channels, keep_alpha):
    rgb = image(8, 24, 31, channels)
    fast, slow = encode_png(rgb, [1, 2]), encode_png(rgb, [4])
    assert png.decode(fast) is not None and png.decode(slow) is None
    np.testing.assert_array_equal(decode_image(fast, keep_alpha=keep_alpha), decode_image(slow, keep_alpha=keep_alpha))


def test_composited_render_matches_the_opencv_path():
    """decode_image's result (alpha composited onto black) is the same
    whichever decoder ran."""
    rgba = image(7, 64, 64, 4)
    rgba[..., 3] = np.where(np.arange(64)[None, :] < 20, 0, 255)
    rgba[10:20, 30:40, 3] = 128
    fast = encode_png(rgba, [1])
    slow = encode_png(rgba, [4])  # declined: OpenCV decodes it
    assert png.decode(fast) is not None and png.decode(slow) is None
    np.testing.assert_array_equal(decode_image(fast), decode_image(slow))
