"""Reading an image's format and dimensions from its header, without decoding.

Decoding allocates width x height x channels bytes before a single pixel is
checked, so a 30 kB PNG that claims 30000 x 30000 pixels would cost gigabytes.
The header says what the decode would cost; :func:`probe` reads it.
"""

import struct

__all__ = ["SUPPORTED_FORMATS", "probe"]

SUPPORTED_FORMATS = ("PNG", "JPEG", "WebP", "TIFF", "BMP")

# JPEG start-of-frame markers (baseline, progressive, lossless, ...): the
# frame header carries the dimensions. C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def probe(data):
    """Return ``(format, width, height)`` from the header of an image file.

    ``format`` is None when the bytes are none of the supported formats;
    width and height are None when the header is cut short or malformed.
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ("PNG", *_png(data))
    if data.startswith(b"\xff\xd8"):
        return ("JPEG", *_jpeg(data))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ("WebP", *_webp(data))
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return ("TIFF", *_tiff(data))
    if data[:2] == b"BM":
        return ("BMP", *_bmp(data))
    return (None, None, None)


def _png(data):
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None, None
    return struct.unpack(">II", data[16:24])


def _jpeg(data):
    offset = 2
    end = len(data)
    while offset + 4 <= end:
        if data[offset] != 0xFF:
            return None, None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            offset += 2
            continue
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        if marker in _SOF_MARKERS:
            if offset + 9 > end:
                return None, None
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return width, height
        if length < 2:
            return None, None
        offset += 2 + length
    return None, None


def _webp(data):
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None, None


def _tiff(data):
    order = "<" if data[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
        width = height = None
        for index in range(min(count, 512)):
            entry = data[ifd + 2 + 12 * index : ifd + 14 + 12 * index]
            tag, kind, _ = struct.unpack(order + "HHI", entry[:8])
            if tag in (256, 257):
                value = struct.unpack(order + ("H" if kind == 3 else "I"), entry[8:10] if kind == 3 else entry[8:12])[0]
                if tag == 256:
                    width = value
                else:
                    height = value
        return width, height
    except struct.error:
        return None, None


def _bmp(data):
    if len(data) < 26:
        return None, None
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)
