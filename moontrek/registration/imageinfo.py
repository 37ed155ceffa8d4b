"""Reading an image's format and dimensions from its header, without decoding.

Decoding allocates width x height x channels bytes before a single pixel is
checked, so a 30 kB PNG that claims 30000 x 30000 pixels would cost gigabytes.
The header says what the decode would cost; :func:`probe` reads it.
"""

import struct

__all__ = ["SUPPORTED_FORMATS", "probe"]

SUPPORTED_FORMATS = ("PNG", "JPEG", "HEIC/HEIF", "AVIF", "WebP", "TIFF", "BMP")

# ISOBMFF brands (the ``ftyp`` box): HEVC-coded HEIF (the iPhone's HEIC), the
# generic HEIF image brands, and AV1-coded AVIF. Decoded by different
# libraries, so told apart here.
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
_GENERIC_BRANDS = {b"mif1", b"msf1"}
# A box tree deeper than this, or with more boxes, is not a photo's header.
_MAX_BOXES = 4096

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
    if data[4:8] == b"ftyp":
        kind = _isobmff_kind(data)
        if kind is not None:
            return (kind, *_isobmff_size(data))
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


def _boxes(data, start, end):
    """(type, payload start, payload end) of the ISOBMFF boxes in data[start:end]."""
    offset = start
    count = 0
    while offset + 8 <= end and count < _MAX_BOXES:
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        header = 8
        if size == 1:  # a 64-bit size follows the type
            if offset + 16 > end:
                return
            (size,) = struct.unpack(">Q", data[offset + 8 : offset + 16])
            header = 16
        elif size == 0:  # to the end of the enclosing box
            size = end - offset
        if size < header or offset + size > end:
            return
        yield kind, offset + header, offset + size
        offset += size
        count += 1


def _isobmff_kind(data):
    for kind, start, end in _boxes(data, 0, min(len(data), 4096)):
        if kind != b"ftyp":
            return None
        # major brand, minor version, then compatible brands
        major = data[start : start + 4]
        brands = {major, *(data[i : i + 4] for i in range(start + 8, end - 3, 4))}
        # The generic brands (mif1, msf1) appear in AVIF files too: the
        # codec-specific brand decides, the major one first.
        if major in _AVIF_BRANDS or (major not in _HEIF_BRANDS - _GENERIC_BRANDS and brands & _AVIF_BRANDS):
            return "AVIF"
        if brands & _HEIF_BRANDS:
            return "HEIF"
        return None
    return None


def _isobmff_size(data):
    """The largest image extent (``ispe`` property) in ``meta/iprp/ipco``.

    Every coded image of a HEIF or AVIF file (the primary one, its grid
    tiles, thumbnails) declares its size in an ``ispe``; the largest is what
    a decode would allocate, so the pixel limit is checked against it. It
    is the coded size: an encoder may pad it to its block size (HEVC's 64 px)
    and crop the visible image on decoding, so it is an upper bound.
    """
    best = None
    end = len(data)
    for kind, start, stop in _boxes(data, 0, end):
        if kind != b"meta":
            continue
        # meta is a full box: 4 bytes of version and flags first.
        for child, child_start, child_stop in _boxes(data, start + 4, stop):
            if child != b"iprp":
                continue
            for container, c_start, c_stop in _boxes(data, child_start, child_stop):
                if container != b"ipco":
                    continue
                for prop, p_start, p_stop in _boxes(data, c_start, c_stop):
                    if prop == b"ispe" and p_stop - p_start >= 12:
                        width, height = struct.unpack(">II", data[p_start + 4 : p_start + 12])
                        if best is None or width * height > best[0] * best[1]:
                            best = (width, height)
        break
    return best if best is not None else (None, None)
