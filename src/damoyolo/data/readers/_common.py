"""What the dataset readers share: sizes, box sanitising, names that stay inside a
folder, text files read as UTF-8."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...imageheader import max_image_pixels
from ..imageinfo import image_size
from ..records import DataReport, DatasetError


def _size_from_file(path: Path, report: DataReport, message: str) -> tuple[int, int] | None:
    """(h, w) read from the image file when the annotation has none; None after reporting
    the file as missing or corrupt (``message`` names the record)."""
    hw = image_size(path)
    if hw is None:
        report.add("missing_image" if not path.is_file() else "corrupt_image", message)
    return hw


def _oversized(h: int, w: int, where: str, report: DataReport) -> bool:
    """True (and counted) when an image of h x w pixels is over the pixel limit: skipped."""
    if h * w <= max_image_pixels():
        return False
    report.add("oversized_image", f"{where}: {w}x{h} pixels")
    return True


def _image_hw(hw: tuple[int, int] | None, path: Path, where: str, report: DataReport,
              why: str) -> tuple[int, int] | None:
    """The image's (h, w): the annotation's ``hw`` when it has one, else read from the file;
    None (reported) when neither gives one or the image is over the pixel limit."""
    if hw is None:
        hw = _size_from_file(path, report, f"{where}: {why}")
        if hw is None:
            return None
    if _oversized(hw[0], hw[1], where, report):
        return None
    return hw


def _sanitize_boxes(boxes: np.ndarray, labels: np.ndarray, h: int, w: int, where: str,
                    report: DataReport) -> tuple[np.ndarray, np.ndarray]:
    """Clip boxes to the image (counted) and drop zero/negative-area boxes (counted)."""
    if len(boxes) == 0:
        return boxes.reshape(0, 4).astype(np.float32), labels.astype(np.int64)
    boxes = boxes.astype(np.float64)
    bad = ~np.isfinite(boxes).all(1)
    boxes[bad] = 0.0
    clipped = boxes.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, w)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, h)
    moved = (np.abs(clipped - boxes) > 1e-3).any(1)
    area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    degenerate = (area <= 0) | bad | (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    for i in np.nonzero(moved & ~degenerate)[0]:
        report.add("box_clipped", f"{where} box {i}: {np.round(boxes[i], 2).tolist()} -> "
                                  f"{np.round(clipped[i], 2).tolist()} (image {w}x{h})")
    for i in np.nonzero(degenerate)[0]:
        report.add("box_degenerate", f"{where} box {i}: {np.round(boxes[i], 2).tolist()}")
    keep = ~degenerate
    return clipped[keep].astype(np.float32), labels[keep].astype(np.int64)


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _inside_root(name: str) -> bool:
    """Whether a relative file name from an annotation file stays inside the folder it is
    joined to: not absolute and no ``..`` part.  Judged on the name, so images that are
    symbolic links (split folders made with ``ln -s``, DVC, git-annex) are fine."""
    from pathlib import PurePosixPath, PureWindowsPath
    for pure in (PurePosixPath(name), PureWindowsPath(name)):
        if pure.is_absolute() or pure.anchor or ".." in pure.parts:
            return False
    return True


def _read_text(p: Path, what: str) -> str:
    """A text file as UTF-8; :class:`DatasetError` naming the file when it is not."""
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{p}: {what} is not UTF-8 text (byte {e.start}: "
                           f"{e.object[e.start:e.start + 1]!r})") from None


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _read_names_file(p: Path) -> list[str]:
    return [ln.strip() for ln in _read_text(p, "the class-names file").splitlines() if ln.strip()]
