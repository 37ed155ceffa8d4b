"""HEIC/HEIF and AVIF photos, as phones produce them, through the engine and the HTTP app."""

import io
import struct

import cv2
import numpy as np
import pillow_heif
import pytest
from PIL import Image

from moontrek.registration import ImageError, ImageTooLargeError, corner_error, decode_image, register
from moontrek.registration.imageinfo import SUPPORTED_FORMATS, probe
from moontrek.synthetic import encode, make_pair, perturb_photo, render_moon
from tests.conftest import multipart

ORIENTATION = 0x0112


def encode_pillow(bgr, fmt, *, orientation=None, quality=92):
    """HEIF (pillow-heif) or AVIF (Pillow) bytes of a BGR image, optionally
    with an EXIF orientation tag."""
    image = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    options = {"quality": quality}
    if orientation is not None:
        exif = Image.Exif()
        exif[ORIENTATION] = orientation
        options["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def heic_16bit(rgb16):
    """A 10-bit HEIC made from a 16-bit RGB array (pillow-heif keeps the top 10 bits)."""
    heif = pillow_heif.from_bytes(mode="RGB;16", size=(rgb16.shape[1], rgb16.shape[0]), data=rgb16.tobytes())
    buffer = io.BytesIO()
    heif.save(buffer, quality=-1)
    return buffer.getvalue()


def with_claimed_size(data, width, height):
    """The same file with every ``ispe`` box claiming ``width`` x ``height``."""
    data = bytearray(data)
    start = 0
    found = 0
    while (index := data.find(b"ispe", start)) >= 0:
        struct.pack_into(">II", data, index + 8, width, height)  # after version/flags
        start = index + 4
        found += 1
    assert found, "no ispe box in the file"
    return bytes(data)


@pytest.fixture(scope="module")
def photo_pair():
    """A photo-like pair with a known answer (shared by the format tests)."""
    model = render_moon(600, seed=4)
    pair = make_pair(model, angle=40.0, scale=0.9, user_size=(560, 540))
    rng = np.random.default_rng(3)
    pair.user = perturb_photo(pair.user, rng, cast=(0.85, 0.95, 1.1), noise=2.0, flatten=0.8)
    return pair


FORMATS = ["HEIF", "AVIF"]


class TestProbe:
    @pytest.mark.parametrize("fmt,kind", [("HEIF", "HEIF"), ("AVIF", "AVIF")])
    def test_size_from_the_header(self, fmt, kind):
        """The format and the stored size come from the ISOBMFF header (ftyp
        brand, ispe property), without decoding."""
        data = encode_pillow(np.zeros((64, 128, 3), np.uint8), fmt)
        assert probe(data) == (kind, 128, 64)

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_padded_size_is_an_upper_bound(self, fmt):
        """Where the codec pads the coded image (HEVC to its block size, the
        visible part cropped on decoding) the header's size is at least the
        image's and at most one block more: the pixel limit errs safe."""
        kind, width, height = probe(encode_pillow(np.zeros((48, 80, 3), np.uint8), fmt))
        assert 80 <= width < 80 + 64 and 48 <= height < 48 + 64

    def test_every_format_in_the_message(self):
        """The "not an image" message lists every accepted format, HEIC and AVIF included."""
        with pytest.raises(ImageError) as info:
            decode_image(b"this is a text file, not a photo", field="user-file")
        for name in SUPPORTED_FORMATS:
            assert name in str(info.value)
        assert "HEIC" in str(info.value) and "AVIF" in str(info.value)

    def test_other_isobmff_is_not_an_image(self):
        """An MP4 (ISOBMFF with a video brand) is not taken for a photo."""
        mp4 = struct.pack(">I4s4sI4s", 20, b"ftyp", b"isom", 512, b"mp41") + b"\x00" * 64
        assert probe(mp4)[0] is None


class TestDecode:
    @pytest.mark.parametrize("fmt", FORMATS)
    def test_decodes_to_bgr8(self, fmt):
        """HEIF and AVIF decode to 8-bit BGR close to what was encoded."""
        image = np.zeros((64, 96, 3), np.uint8)
        image[:, :48] = (40, 120, 220)  # BGR: orange on the left
        decoded = decode_image(encode_pillow(image, fmt, quality=95))
        assert decoded.shape == (64, 96, 3) and decoded.dtype == np.uint8
        assert np.abs(decoded[16:48, 8:40].astype(int) - (40, 120, 220)).max() < 24
        assert decoded[16:48, 56:88].max() < 24

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_orientation_applied(self, fmt):
        """A photo stored sideways with orientation 6 (turn 90 degrees
        clockwise) comes out upright, as the phone showed it."""
        upright = np.zeros((80, 40, 3), np.uint8)
        upright[:10] = 255  # a bright top edge
        stored = cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE)  # the left edge is bright
        decoded = decode_image(encode_pillow(stored, fmt, orientation=6, quality=95))
        assert decoded.shape[:2] == (80, 40)
        assert decoded[:8].mean() > 200 and decoded[20:].mean() < 30

    def test_ten_bit_heic_to_eight_bits(self):
        """A 10-bit HEIC decodes to 8 bits with its levels kept."""
        rgb = np.zeros((32, 48, 3), np.uint16)
        rgb[:, :24] = 0xC000  # three quarters of white
        decoded = decode_image(heic_16bit(rgb))
        assert decoded.dtype == np.uint8 and decoded.shape == (32, 48, 3)
        assert abs(int(np.median(decoded[8:24, 4:20])) - 0xC0) <= 8
        assert decoded[8:24, 30:44].max() < 16

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_damaged_file(self, fmt):
        """A truncated file is a damaged-file ImageError, never a crash."""
        data = encode_pillow(np.full((64, 64, 3), 128, np.uint8), fmt)
        with pytest.raises(ImageError, match=f"damaged {fmt} file"):
            decode_image(data[: len(data) * 2 // 3], field="user-file")

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_bomb_refused_before_decoding(self, fmt, monkeypatch):
        """A small file whose header claims 30000 x 30000 pixels is refused
        from the header: the decoder is never opened."""
        data = with_claimed_size(encode_pillow(np.zeros((64, 64, 3), np.uint8), fmt), 30000, 30000)

        def no_open(*args, **kwargs):
            raise AssertionError("the decoder was opened")

        monkeypatch.setattr(Image, "open", no_open)
        with pytest.raises(ImageTooLargeError, match="30000x30000"):
            decode_image(data, field="user-file", max_pixels=50_000_000)


class TestRegister:
    @pytest.mark.parametrize("fmt", FORMATS)
    @pytest.mark.parametrize("orientation", [None, 6])
    def test_register(self, photo_pair, fmt, orientation):
        """A HEIC or AVIF photo (upright, or stored sideways with its
        orientation tag) registers onto a PNG render with the known answer."""
        stored = photo_pair.user
        if orientation == 6:
            stored = cv2.rotate(stored, cv2.ROTATE_90_COUNTERCLOCKWISE)
        data = encode_pillow(stored, fmt, orientation=orientation)
        result = register(data, encode(photo_pair.model), "SIFT")
        height, width = photo_pair.user.shape[:2]
        assert corner_error(result.homography, photo_pair.expected, width, height) < 0.01 * width


class TestHTTP:
    @pytest.mark.parametrize("fmt", FORMATS)
    def test_registrar(self, client, photo_pair, fmt):
        """The registrar accepts a HEIC or AVIF photo."""
        body, headers = multipart(
            {"user-file": encode_pillow(photo_pair.user, fmt, orientation=1), "model-file": encode(photo_pair.model)}
        )
        response = client.simulate_post("/api/registrar/SIFT", body=body, headers=headers)
        assert response.status_code == 200, response.text
        height, width = photo_pair.user.shape[:2]
        homography = np.array(response.json["payload"]["homography_matrix"])
        assert corner_error(homography, photo_pair.expected, width, height) < 0.01 * width

    def test_heic_bomb_is_413(self, client, photo_pair):
        """A bomb-like HEIC claiming 30000 x 30000 pixels gets 413 naming its pixel count."""
        bomb = with_claimed_size(encode_pillow(np.zeros((64, 64, 3), np.uint8), "HEIF"), 30000, 30000)
        body, headers = multipart({"user-file": bomb, "model-file": encode(photo_pair.model)})
        response = client.simulate_post("/api/registrar/SIFT", body=body, headers=headers)
        assert response.status_code == 413
        assert "900000000" in response.json["error"]

    def test_text_is_400_listing_formats(self, client, photo_pair):
        """Text sent as the photo gets 400 with every accepted format named."""
        body, headers = multipart({"user-file": b"just some text", "model-file": encode(photo_pair.model)})
        response = client.simulate_post("/api/registrar/SIFT", body=body, headers=headers)
        assert response.status_code == 400
        assert "HEIC/HEIF" in response.json["error"] and "AVIF" in response.json["error"]
