"""Image sizes from file headers, and the pixel limit checked before any image is decoded.

A few hundred bytes of header can claim 100000 x 100000 pixels; decoding such a file (a
"decompression bomb") allocates tens of gigabytes.  Every image this package decodes is
first sized from its header (PNG, JPEG, BMP, GIF, WebP, TIFF, PNM) and refused above
:func:`max_image_pixels`: by default 100 million pixels (e.g. 10000 x 10000), changed with
the environment variable ``DAMOYOLO_MAX_IMAGE_PIXELS`` or :func:`set_max_image_pixels` (an
integer >= 1; anything else is a ``ConfigError``).
Formats whose header is not parsed here (JPEG 2000, BigTIFF) keep OpenCV's own cap of
2^30 pixels.
"""

from __future__ import annotations

import io
import operator
import os
import struct

from .config import ConfigError
from .errors import DamoyoloError

__all__ = ["DEFAULT_MAX_IMAGE_PIXELS", "ImageTooLargeError", "header_size", "max_image_pixels",
           "set_max_image_pixels", "check_image_pixels"]

DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
_ENV = "DAMOYOLO_MAX_IMAGE_PIXELS"
_limit: int | None = None


class ImageTooLargeError(DamoyoloError, ValueError):
    """An image whose header claims more pixels than the limit."""


def max_image_pixels() -> int:
    """The pixel limit in force (``set_max_image_pixels``, else the environment variable
    ``DAMOYOLO_MAX_IMAGE_PIXELS``, else 100 million).

    Raises :class:`~damoyolo.config.ConfigError` when the environment variable is set to
    anything but an integer >= 1."""
    if _limit is not None:
        return _limit
    env = os.environ.get(_ENV, "")
    if not env.strip():
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        n = int(env.strip())
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"{_ENV}={env!r}: the pixel limit must be an integer >= 1 "
                          f"(e.g. {DEFAULT_MAX_IMAGE_PIXELS}); unset it for the default")
    return n


def set_max_image_pixels(n: int | None) -> None:
    """Set the pixel limit for this process (``None``: back to the default / environment).

    Raises :class:`~damoyolo.config.ConfigError` unless ``n`` is ``None`` or an integer
    >= 1."""
    global _limit
    if n is None:
        _limit = None
        return
    try:
        v = operator.index(n) if not isinstance(n, bool) else 0
    except TypeError:
        v = 0
    if v < 1:
        raise ConfigError(f"set_max_image_pixels({n!r}): the pixel limit must be an integer "
                          f">= 1, or None for the default")
    _limit = int(v)


def check_image_pixels(hw: tuple[int, int], where: str) -> None:
    """Raise :class:`ImageTooLargeError` naming ``where`` when ``h * w`` exceeds the limit."""
    h, w = hw
    limit = max_image_pixels()
    if h * w > limit:
        raise ImageTooLargeError(
            f"{where}: {w}x{h} pixels ({h * w / 1e6:.1f} MP) exceeds the limit of "
            f"{limit / 1e6:g} MP; raise it with DAMOYOLO_MAX_IMAGE_PIXELS if the image is real")


def _jpeg(f) -> tuple[int, int] | None:
    f.seek(2)
    while True:
        b = f.read(1)
        while b and b != b"\xff":
            b = f.read(1)
        while b == b"\xff":
            b = f.read(1)
        if not b:
            return None
        marker = b[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        seg = f.read(2)
        if len(seg) < 2:
            return None
        length = struct.unpack(">H", seg)[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                      0xCF):
            data = f.read(5)
            if len(data) < 5:
                return None
            h, w = struct.unpack(">HH", data[1:5])
            return h, w
        if length < 2:
            return None
        f.seek(length - 2, 1)


def _tiff(f) -> tuple[int, int] | None:
    f.seek(0)
    head = f.read(8)
    end = "<" if head[:2] == b"II" else ">"
    if len(head) < 8:
        return None
    f.seek(struct.unpack(end + "I", head[4:8])[0])  # the first directory, often at the end
    raw = f.read(2)
    if len(raw) < 2:
        return None
    n = struct.unpack(end + "H", raw)[0]
    entries = f.read(12 * min(n, 4096))
    dims: dict[int, int] = {}
    for k in range(len(entries) // 12):
        e = entries[12 * k:12 * k + 12]
        tag, typ = struct.unpack(end + "HH", e[:4])
        if tag in (256, 257):
            dims[tag] = (struct.unpack(end + "H", e[8:10])[0] if typ == 3
                         else struct.unpack(end + "I", e[8:12])[0])
    return (dims[257], dims[256]) if 256 in dims and 257 in dims else None


def _pnm(buf: bytes) -> tuple[int, int] | None:
    tokens: list[bytes] = []
    for line in buf[2:512].splitlines():
        line = line.split(b"#", 1)[0]
        tokens += line.split()
        if len(tokens) >= 2:
            break
    try:
        return int(tokens[1]), int(tokens[0])
    except (IndexError, ValueError):
        return None


def header_size(data) -> tuple[int, int] | None:
    """(height, width) claimed by an image file's header; ``data`` is the file's bytes or a
    binary file object (read and seeked as needed: a JPEG's size marker may follow large
    metadata segments, a TIFF's directory often sits at the end of the file).  None for an
    unknown or broken header."""
    f = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        f.seek(0)
        buf = f.read(512)
        if buf[:8] == b"\x89PNG\r\n\x1a\n" and len(buf) >= 24:
            w, h = struct.unpack(">II", buf[16:24])
            return int(h), int(w)
        if buf[:2] == b"\xff\xd8":
            return _jpeg(f)
        if buf[:2] == b"BM" and len(buf) >= 26:
            w, h = struct.unpack("<ii", buf[18:26])
            return abs(int(h)), abs(int(w))
        if buf[:6] in (b"GIF87a", b"GIF89a") and len(buf) >= 10:
            w, h = struct.unpack("<HH", buf[6:10])
            return int(h), int(w)
        if buf[:4] == b"RIFF" and buf[8:12] == b"WEBP" and len(buf) >= 30:
            kind = buf[12:16]
            if kind == b"VP8X":
                w = int.from_bytes(buf[24:27], "little") + 1
                h = int.from_bytes(buf[27:30], "little") + 1
                return h, w
            if kind == b"VP8L":
                b = int.from_bytes(buf[21:25], "little")
                return ((b >> 14) & 0x3FFF) + 1, (b & 0x3FFF) + 1
            if kind == b"VP8 ":
                w, h = struct.unpack("<HH", buf[26:30])
                return h & 0x3FFF, w & 0x3FFF
            return None
        if buf[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff(f)
        if buf[:1] == b"P" and buf[1:2] in b"123456" and len(buf) > 2:
            return _pnm(buf)
    except (struct.error, ValueError, OSError):
        return None
    return None
