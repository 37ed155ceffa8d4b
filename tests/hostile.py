"""A corpus of hostile and broken requests, shared by the in-process tests
and the real-server test. Each case: (name, method, path, body, headers,
expected statuses)."""

import os
import struct
import zlib

import numpy as np

from moontrek.synthetic import encode, render_moon
from tests.conftest import multipart


def png_claiming(width, height):
    """A tiny PNG whose header claims width x height pixels: a decompression
    bomb as far as any decoder that trusts the header is concerned."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 100_000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_claiming(width, height):
    """A small JPEG whose frame header is rewritten to claim width x height."""
    data = bytearray(encode(np.full((64, 64, 3), 128, np.uint8), ".jpg", quality=90))
    offset = data.index(b"\xff\xc0")
    data[offset + 5 : offset + 9] = struct.pack(">HH", height, width)
    return bytes(data)


_CORPUS = []


def corpus():
    """The cases, built once per test session."""
    if not _CORPUS:
        _CORPUS.extend(_build())
    return _CORPUS


def _build():
    model = render_moon(400, seed=5)
    good = encode(model)
    good_jpeg = encode(model, ".jpg", quality=80)
    rng = np.random.default_rng(1)
    noise = encode(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8))
    other_noise = encode(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8))
    blank = encode(np.zeros((300, 300, 3), np.uint8))
    honest_big = encode(np.random.default_rng(2).integers(0, 256, (8000, 8000), dtype=np.uint8), ".jpg", quality=30)
    path = "/api/registrar/SIFT"

    def form(user, model=good, **kwargs):
        return multipart({"user-file": user, "model-file": model}, **kwargs)

    cases = [
        ("decompression bomb PNG", form(png_claiming(30000, 30000)), 413),
        ("decompression bomb JPEG", form(jpeg_claiming(30000, 30000)), 413),
        ("honest 8000x8000 photo over the pixel limit", form(honest_big), 413),
        ("zero-byte file", form(b""), 400),
        ("text named .png", form(b"hello, I am a text file\n" * 20), 400),
        ("PDF named .png", form(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"), 400),
        ("random bytes named .png", form(os.urandom(5000)), 400),
        ("truncated PNG", form(good[: len(good) // 2]), 400),
        ("PNG cut inside its header", form(good[:20]), 400),
        ("truncated JPEG", form(good_jpeg[: len(good_jpeg) // 3]), 400),
        ("1x1 image", form(encode(np.zeros((1, 1, 3), np.uint8))), 400),
        ("blank images", form(blank, blank), 422),
        ("noise images", form(noise, other_noise), 422),
        ("field sent twice", multipart({"user-file": [good, good], "model-file": good}), 400),
        ("too many parts", multipart({f"extra-{n}": b"x" for n in range(40)}), 400),
        ("JSON body", (b'{"user-file": "x"}', {"Content-Type": "application/json"}), 415),
        ("urlencoded body", (b"user-file=x", {"Content-Type": "application/x-www-form-urlencoded"}), 415),
        ("no body", (b"", {}), 415),
        ("multipart without boundary", (b"--x\r\n", {"Content-Type": "multipart/form-data"}), 400),
        ("malformed boundary", (b"garbage", {"Content-Type": "multipart/form-data; boundary=\"unterminated"}), 400),
        ("body that ends early", (form(good)[0][:300], form(good)[1]), 400),
    ]
    requests = [(name, "POST", path, body, headers, status) for name, (body, headers), status in cases]
    requests += [
        ("odd characters in the algorithm", "POST", "/api/registrar/%3Cscript%3E%00", *form(good), 404),
        ("10 kB algorithm name", "POST", "/api/registrar/" + "A" * 10_000, *form(good), 404),
        ("HEAD on a registrar route", "HEAD", path, b"", {}, 405),
        ("PUT on a registrar route", "PUT", path, *form(good), 405),
        ("DELETE on a registrar route", "DELETE", path, b"", {}, 405),
    ]
    return requests


def status_ok(status, expected):
    return status in expected if isinstance(expected, tuple) else status == expected
