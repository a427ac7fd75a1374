"""Cheap image inspection: size from the file header, and full validation by decoding."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..imageheader import ImageTooLargeError, check_image_pixels, header_size

__all__ = ["image_size", "inspect_image"]


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(height, width) read from the file's header (PNG, JPEG, BMP, GIF, WebP, TIFF, PNM),
    or by decoding other formats (within the pixel limit).

    Returns None when the file is missing or cannot be parsed.
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            hw = header_size(f)
    except OSError:
        return None
    if hw is not None:
        return hw
    try:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    return None if img is None else (int(img.shape[0]), int(img.shape[1]))


def inspect_image(path: str | Path) -> tuple[str | None, str | None, tuple[int, int] | None]:
    """Decode an image fully and classify it.

    Returns ``(fault, detail, (h, w))``: fault is None (fine), ``"missing_image"``,
    ``"corrupt_image"`` (zero bytes, truncated JPEG/PNG, undecodable), ``"oversized_image"``
    (its header claims more pixels than the limit: not decoded) or ``"converted_image"``
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
    claimed = header_size(raw)
    if claimed is not None:
        try:
            check_image_pixels(claimed, str(p))
        except ImageTooLargeError as e:
            return "oversized_image", str(e).split(": ", 1)[1], claimed
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        return "corrupt_image", f"cannot be decoded ({str(e).strip().splitlines()[-1]})", None
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
