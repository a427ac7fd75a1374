"""Cheap image inspection: size from the file header, and full validation by decoding."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

__all__ = ["image_size", "inspect_image"]


def _jpeg_size(f) -> tuple[int, int] | None:
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
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            data = f.read(5)
            if len(data) < 5:
                return None
            h, w = struct.unpack(">HH", data[1:5])
            return h, w
        f.seek(length - 2, 1)


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(height, width) read from a PNG/JPEG/BMP header, or by decoding other formats.

    Returns None when the file is missing or cannot be parsed.
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(26)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
                w, h = struct.unpack(">II", head[16:24])
                return int(h), int(w)
            if head[:2] == b"\xff\xd8":
                return _jpeg_size(f)
            if head[:2] == b"BM" and len(head) >= 26:
                w, h = struct.unpack("<ii", head[18:26])
                return abs(int(h)), int(w)
    except OSError:
        return None
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    return None if img is None else (int(img.shape[0]), int(img.shape[1]))


def inspect_image(path: str | Path) -> tuple[str | None, str | None, tuple[int, int] | None]:
    """Decode an image fully and classify it.

    Returns ``(fault, detail, (h, w))``: fault is None (fine), ``"missing_image"``,
    ``"corrupt_image"`` (zero bytes, truncated JPEG/PNG, undecodable) or ``"converted_image"``
    (grayscale, RGBA or 16-bit: usable after conversion to 8-bit RGB).
    """
    p = Path(path)
    if not p.is_file():
        return "missing_image", "no such file", None
    data = np.fromfile(str(p), dtype=np.uint8)
    if data.size == 0:
        return "corrupt_image", "zero bytes", None
    raw = data.tobytes()
    if raw[:2] == b"\xff\xd8" and b"\xff\xd9" not in raw[-64:]:
        return "corrupt_image", "truncated JPEG (no end-of-image marker)", None
    if raw[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in raw[-16:]:
        return "corrupt_image", "truncated PNG (no IEND chunk)", None
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        return "corrupt_image", "cannot be decoded", None
    hw = (int(img.shape[0]), int(img.shape[1]))
    kinds = []
    if img.ndim == 2 or img.shape[2] == 1:
        kinds.append("grayscale")
    elif img.shape[2] == 4:
        kinds.append("RGBA")
    if img.dtype != np.uint8:
        kinds.append(f"{img.dtype.itemsize * 8}-bit")
    if kinds:
        return "converted_image", "+".join(kinds), hw
    return None, None, hw
