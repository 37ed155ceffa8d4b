"""Property-based fuzzing of the upload path: multipart parsing and image
decoding, through the app and directly.

Properties: whatever the body, the answer is a documented status with the
envelope (never a 500), the app still answers afterwards, and decode_image
either returns an 8-bit 3-channel image or raises ImageError.

Bounded so that the file runs in well under a minute; derandomized when the
CI environment variable is set. MOONTREK_FUZZ_EXAMPLES raises the budget for
a longer local hunt.
"""

import os
import struct
import zlib

import cv2
import falcon.testing
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moontrek.app import create_app
from moontrek.registration import ImageError, decode_image

CI = bool(os.environ.get("CI"))
EXAMPLES = int(os.environ.get("MOONTREK_FUZZ_EXAMPLES", "0")) or None

MAX_UPLOAD_BYTES = 64 * 1024
MAX_IMAGE_PIXELS = 200_000

#: What an upload may be answered with: registered (or a Moon found), or one
#: of the documented refusals of a body. Never 500.
UPLOAD_STATUSES = {200, 400, 413, 415, 422}


def fuzz_settings(examples):
    return settings(
        max_examples=EXAMPLES or examples,
        deadline=None,
        derandomize=CI,
        database=None if CI else settings.default.database,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


# -- image-ish bytes ----------------------------------------------------------------------

SIGNATURES = [
    b"\x89PNG\r\n\x1a\n",
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    b"\xff\xd8",
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    b"\xff\xd8\xff\xc0\x00\x11\x08",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"RIFF\xff\xff\xff\xffWEBPVP8L",
    b"II*\x00",
    b"MM\x00*",
    b"II*\x00\x08\x00\x00\x00",
    b"BM",
    b"BM\x00\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00",
    b"GIF89a",
    b"%PDF-1.4",
]
ENCODINGS = {
    np.uint8: (".png", ".jpg", ".webp", ".bmp", ".tiff"),
    np.uint16: (".png", ".tiff"),
}


@st.composite
def real_images(draw, min_side=8, max_side=48):
    """A small image encoded by OpenCV: PNG, JPEG, WebP, BMP or TIFF, 8 or 16
    bits, 1, 3 or 4 channels; random noise or a flat colour."""
    dtype = draw(st.sampled_from([np.uint8, np.uint16]))
    ext = draw(st.sampled_from(ENCODINGS[dtype]))
    channels = draw(st.sampled_from([1, 3] if ext in (".jpg", ".bmp") else [1, 3, 4]))
    height = draw(st.integers(min_side, max_side))
    width = draw(st.integers(min_side, max_side))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    top = np.iinfo(dtype).max
    if draw(st.booleans()):
        pixels = rng.integers(0, top, size=(height, width, channels), endpoint=True, dtype=dtype)
    else:
        pixels = np.full((height, width, channels), draw(st.integers(0, top)), dtype=dtype)
    ok, buffer = cv2.imencode(ext, pixels)
    assert ok
    return buffer.tobytes()


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@st.composite
def forged_pngs(draw):
    """A PNG whose header claims any size, with a tiny (or no) pixel stream:
    the decompression bomb shape."""
    width = draw(st.integers(0, 2**31 - 1))
    height = draw(st.integers(0, 2**31 - 1))
    depth, colour = draw(st.sampled_from([(8, 0), (8, 2), (8, 6), (16, 2), (1, 0), (8, 3), (7, 9)]))
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
    idat = png_chunk(b"IDAT", zlib.compress(draw(st.binary(max_size=64))))
    return b"\x89PNG\r\n\x1a\n" + header + draw(st.sampled_from([b"", idat, idat + png_chunk(b"IEND", b"")]))


@st.composite
def float_tiffs(draw):
    """An uncompressed one-channel float32 TIFF of finite values (OpenCV's
    encoder writes no such thing, so it is built by hand)."""
    width = draw(st.integers(16, 32))
    height = draw(st.integers(16, 32))
    finite = st.floats(-1.0e30, 1.0e30, allow_nan=False).map(lambda value: float(np.float32(value)))
    values = draw(st.lists(finite, min_size=1, max_size=8))
    pixels = np.resize(np.array(values, np.float32), width * height)
    return tiff(width, height, pixels.tobytes(), samples=1, bits=32, sample_format=3)


def tiff(width, height, data, *, samples, bits, sample_format=1):
    entries = [
        (256, 3, width), (257, 3, height), (258, 3, bits), (259, 3, 1), (262, 3, 1), (273, 4, 8),
        (277, 3, samples), (278, 3, height), (279, 4, len(data)), (284, 3, 1), (339, 3, sample_format),
    ]
    out = b"II*\x00" + struct.pack("<I", 8 + len(data)) + data + struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, 1) + packed
    return out + struct.pack("<I", 0)


@st.composite
def damaged(draw, images):
    """A real encoding cut short, or with some bytes overwritten."""
    data = draw(images)
    if draw(st.booleans()):
        return data[: draw(st.integers(0, len(data)))]
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def image_bytes():
    """Anything that might be sent as an image."""
    return st.one_of(
        st.binary(max_size=256),
        st.builds(lambda signature, tail: signature + tail, st.sampled_from(SIGNATURES), st.binary(max_size=256)),
        real_images(),
        damaged(real_images()),
        forged_pngs(),
        float_tiffs(),
    )


# -- multipart bodies ----------------------------------------------------------------------

BCHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=?"
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=60)


@st.composite
def parts(draw, names):
    """One form part: its name, headers (sometimes odd) and content."""
    name = draw(st.one_of(st.sampled_from(names), st.text(max_size=12)))
    disposition = f'form-data; name="{name}"'
    if draw(st.booleans()):
        disposition += f'; filename="{draw(st.text(max_size=12))}"'
    headers = [f"Content-Disposition: {disposition}".encode("utf-8", "surrogatepass")]
    if draw(st.booleans()):
        headers.append(b"Content-Type: " + draw(st.sampled_from([b"image/png", b"application/octet-stream", b""])))
    if draw(st.integers(0, 4)) == 0:
        headers.append(draw(st.binary(max_size=40)))  # random header bytes
    if draw(st.integers(0, 6)) == 0:
        content = b"\x00" * draw(st.integers(0, MAX_UPLOAD_BYTES + 1000))  # over the upload limit
    else:
        content = draw(image_bytes())
    return b"\r\n".join(headers) + b"\r\n\r\n" + content


@st.composite
def multipart_requests(draw, names):
    """(body, headers) for a form upload: mostly well-formed, with the
    expected fields or not, sometimes mangled."""
    boundary = draw(st.text(BCHARS, min_size=1, max_size=70))
    sections = draw(st.lists(parts(names), max_size=4))
    if draw(st.booleans()):
        # The expected fields, each once, as a real client sends them.
        sections += [
            f'Content-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n\r\n'.encode()
            + draw(image_bytes())
            for name in names
        ]
        sections = draw(st.permutations(sections))
    delimiter = f"--{boundary}".encode()
    body = b"".join(delimiter + b"\r\n" + section + b"\r\n" for section in sections) + delimiter + b"--\r\n"

    mangle = draw(st.integers(0, 5))
    if mangle == 1:
        body = body[: draw(st.integers(0, len(body)))]  # truncated
    elif mangle == 2:
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(min_size=1, max_size=32)) + body[at:]  # garbage inserted
    elif mangle == 3:
        body = body.replace(b"\r\n", b"\n")  # bare line feeds

    content_type = draw(
        st.sampled_from(
            [
                f"multipart/form-data; boundary={boundary}",
                f'multipart/form-data; boundary="{boundary}"',
                f"Multipart/Form-Data;boundary={boundary};charset=utf-8",
                "multipart/form-data",
                "multipart/form-data; boundary=",
                "multipart/form-data; boundary=other",
                None,
            ]
        )
        | HEADER_TEXT.map(lambda text: "multipart/form-data; " + text)
        | HEADER_TEXT
    )
    headers = {"Content-Type": content_type} if content_type is not None else {}
    return body, headers


# -- the properties --------------------------------------------------------------------------


def assert_envelope(result):
    """The answer is JSON in the envelope, with the HTTP status in the body."""
    assert result.status_code in UPLOAD_STATUSES, (result.status_code, result.text)
    body = result.json
    assert body["status"] == result.status_code
    if result.status_code == 200:
        assert body["ok"] is True and set(body) == {"ok", "status", "payload"}
    else:
        assert body["ok"] is False and set(body) == {"ok", "status", "error"}
        assert isinstance(body["error"], str) and body["error"]


@pytest.fixture
def fuzz_app(make_config):
    return create_app(
        make_config(
            default_rate_limits=["1000000 per minute"],
            max_upload_bytes=MAX_UPLOAD_BYTES,
            max_image_pixels=MAX_IMAGE_PIXELS,
        )
    )


def test_registrar_uploads(fuzz_app):
    """Any body posted to the registrar gets a documented status and the
    envelope; the app still answers afterwards."""
    client = falcon.testing.TestClient(fuzz_app)

    @fuzz_settings(500)
    @given(
        request=multipart_requests(("user-file", "model-file")),
        path=st.sampled_from(["/api/registrar/ORB", "/pyapi/registrar/akaze", "/api/registrar/SIFT"]),
    )
    def post(request, path):
        body, headers = request
        result = client.simulate_post(path, body=body, headers=headers)
        assert_envelope(result)
        if result.status_code == 200:
            assert len(result.json["payload"]["homography_matrix"]) == 3

    post()
    assert client.simulate_get("/api/health").status_code == 200


def test_moon_detect_uploads(fuzz_app):
    """The same for POST /api/moon/detect (its one field: image-file)."""
    client = falcon.testing.TestClient(fuzz_app)

    @fuzz_settings(300)
    @given(
        request=multipart_requests(("image-file",)),
        path=st.sampled_from(["/api/moon/detect", "/pyapi/moon/detect"]),
    )
    def post(request, path):
        body, headers = request
        result = client.simulate_post(path, body=body, headers=headers)
        assert_envelope(result)
        if result.status_code == 200:
            circle = result.json["payload"]["circle"]
            assert {"x", "y", "radius"} <= set(circle)

    post()
    assert client.simulate_get("/api/health").status_code == 200


@fuzz_settings(800)
@given(data=image_bytes(), max_pixels=st.one_of(st.none(), st.integers(1, 10_000)))
def test_decode_image(data, max_pixels):
    """decode_image returns an 8-bit, 3-channel image of at least 16x16, or
    raises ImageError: nothing else, and no warning (the suite turns them into
    errors)."""
    try:
        image = decode_image(data, field="user-file", max_pixels=max_pixels)
    except ImageError as exc:
        assert exc.message and "user-file" in exc.message
        return
    assert isinstance(image, np.ndarray)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert min(image.shape[:2]) >= 16
    if max_pixels is not None:
        assert image.shape[0] * image.shape[1] <= max_pixels


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_decode_float_tiff_with_non_finite_values(bad):
    """A float TIFF holding NaN or infinity decodes to a clean image or is
    refused with ImageError; it does not warn."""
    pixels = np.linspace(0, 1, 32 * 32, dtype=np.float32)
    pixels[5] = bad
    data = tiff(32, 32, pixels.tobytes(), samples=1, bits=32, sample_format=3)
    try:
        image = decode_image(data)
    except ImageError:
        return
    assert image.dtype == np.uint8 and image.shape == (32, 32, 3)


# -- what the fuzzing found, pinned ------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/registrar/ORB", "/api/moon/detect"])
@pytest.mark.parametrize("body", [None, b""])
def test_multipart_post_without_a_body(fuzz_app, path, body):
    """A multipart POST with no body and no Content-Length (curl -X POST -H
    'Content-Type: multipart/form-data; boundary=x') is a 400, not Falcon's
    AssertionError as a 500."""
    client = falcon.testing.TestClient(fuzz_app)
    result = client.simulate_post(path, body=body, headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert_envelope(result)
    assert result.status_code == 400 and "no body" in result.json["error"]


def test_part_headers_that_are_not_utf8(fuzz_app):
    """A Latin-1 filename in Content-Disposition is a 400, not Falcon's
    UnicodeDecodeError as a 500."""
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="user-file"; filename="caf\xe9.png"\r\n\r\n'
        + cv2.imencode(".png", np.zeros((32, 32, 3), np.uint8))[1].tobytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    client = falcon.testing.TestClient(fuzz_app)
    result = client.simulate_post(
        "/api/registrar/ORB", body=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert_envelope(result)
    assert result.status_code == 400 and "UTF-8" in result.json["error"]
