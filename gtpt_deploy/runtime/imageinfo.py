"""Image size and sample format from the first bytes of a file, without decoding it. numpy-free, no torch.

OpenCV has no header-only reader, and decoding first is what must be avoided: a 30000x30000 PNG took 5.4 GB before
anything could refuse it. These parsers read only the fixed header fields of PNG, JPEG, BMP, GIF, WebP, TIFF and
binary PNM; for any other or unrecognised file they return None and the decoder decides (OpenCV's own pixel limit
still applies there).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    float_samples: bool = False         # TIFF SampleFormat 3 (IEEE float): OpenCV's color reader cannot take it

    @property
    def pixels(self) -> int:
        return self.width * self.height


def image_info(data: bytes | memoryview) -> ImageInfo | None:
    """``data`` (the file's bytes; a memoryview avoids a copy) -> its ImageInfo, or None when not recognised."""
    data = memoryview(data).cast("B")
    try:
        for sig, parse in _PARSERS:
            if data[:len(sig)] == sig:
                return parse(data)
    except (struct.error, IndexError, ValueError):  # a truncated or garbled header: let the decoder report it
        return None
    return None


def _png(d: bytes) -> ImageInfo | None:
    if d[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", d[16:24])
    return ImageInfo("PNG", w, h)


def _jpeg(d: bytes) -> ImageInfo | None:
    i = 2
    while i + 4 <= len(d):
        if d[i] != 0xFF:
            return None
        marker = d[i + 1]
        if marker == 0xFF:                       # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # stand-alone markers: no length field
            i += 2
            continue
        length = struct.unpack(">H", d[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame (not DHT/JPG/DAC)
            h, w = struct.unpack(">HH", d[i + 5:i + 9])
            return ImageInfo("JPEG", w, h)
        i += 2 + length
    return None


def _bmp(d: bytes) -> ImageInfo | None:
    if struct.unpack("<I", d[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        w, h = struct.unpack("<HH", d[18:22])
    else:
        w, h = struct.unpack("<ii", d[18:26])
    return ImageInfo("BMP", abs(w), abs(h))


def _gif(d: bytes) -> ImageInfo:
    w, h = struct.unpack("<HH", d[6:10])
    return ImageInfo("GIF", w, h)


def _webp(d: bytes) -> ImageInfo | None:
    if d[8:12] != b"WEBP":
        return None
    kind = bytes(d[12:16])
    if kind == b"VP8 ":
        w, h = struct.unpack("<HH", d[26:30])
        return ImageInfo("WebP", w & 0x3FFF, h & 0x3FFF)
    if kind == b"VP8L":
        bits = struct.unpack("<I", d[21:25])[0]
        return ImageInfo("WebP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if kind == b"VP8X":
        return ImageInfo("WebP", int.from_bytes(d[24:27], "little") + 1, int.from_bytes(d[27:30], "little") + 1)
    return None


def _tiff(d: bytes) -> ImageInfo | None:
    end = "<" if bytes(d[:2]) == b"II" else ">"
    (ifd,) = struct.unpack(end + "I", d[4:8])
    (count,) = struct.unpack(end + "H", d[ifd:ifd + 2])
    tags: dict[int, int] = {}
    for k in range(count):
        e = ifd + 2 + 12 * k
        tag, typ, n = struct.unpack(end + "HHI", d[e:e + 8])
        # The first value only: SHORT (type 3) or LONG; inline when all values fit the 4-byte field (SampleFormat
        # per channel of an RGB image does not: then the field holds their offset).
        fmt, size = ("H", 2) if typ == 3 else ("I", 4)
        at = e + 8 if n * size <= 4 else struct.unpack(end + "I", d[e + 8:e + 12])[0]
        tags[tag] = struct.unpack(end + fmt, d[at:at + size])[0]
    if 256 not in tags or 257 not in tags:
        return None
    return ImageInfo("TIFF", tags[256], tags[257], float_samples=tags.get(339) == 3)


def _pnm(d: bytes) -> ImageInfo | None:
    tokens: list[bytes] = []
    for line in bytes(d[2:512]).split(b"\n"):
        tokens.extend(line.split(b"#", 1)[0].split())
        if len(tokens) >= 2:
            return ImageInfo("PNM", int(tokens[0]), int(tokens[1]))
    return None


_PARSERS = ((b"\x89PNG\r\n\x1a\n", _png), (b"\xff\xd8", _jpeg), (b"BM", _bmp), (b"GIF87a", _gif), (b"GIF89a", _gif),
            (b"RIFF", _webp), (b"II*\x00", _tiff), (b"MM\x00*", _tiff), (b"P5", _pnm), (b"P6", _pnm))
