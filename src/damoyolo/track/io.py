"""Tracking results as files: MOTChallenge txt and JSON per frame.

MOTChallenge txt, one line per box: ``frame,id,x,y,w,h,score,-1,-1,-1`` with 1-based frame
numbers, top-left corner and size in pixels.  Ground-truth files of the same format carry
``frame,id,x,y,w,h,flag,class,visibility`` (MOT16+) -- :func:`read_mot_txt` reads both.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import DamoyoloError
from .bytetrack import Tracks

__all__ = ["MOTFileError", "mot_lines", "MOTWriter", "read_mot_txt", "write_json"]


class MOTFileError(DamoyoloError, ValueError):
    """A MOTChallenge txt file that cannot be read."""


def mot_lines(frame: int, tracks: Tracks) -> list[str]:
    """One frame's tracks -> MOTChallenge lines (``frame`` is 1-based)."""
    out = []
    for (x1, y1, x2, y2), tid, s in zip(tracks.boxes.tolist(), tracks.ids.tolist(),
                                        tracks.scores.tolist()):
        out.append(f"{frame},{tid},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{s:.4f},"
                   f"-1,-1,-1")
    return out


class MOTWriter:
    """Write frames to a MOTChallenge txt file: lines go to a temporary file in the same
    folder, renamed to ``path`` by :meth:`close` (a killed run leaves no half file).
    Closing again does nothing; writing after closing is an error."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f = None
        self._tmp: Path | None = None
        self._closed = False
        self.rows = 0

    def _open(self) -> None:
        from ..outputs import temporary_path
        self._tmp = temporary_path(self.path)
        self._f = open(self._tmp, "w")

    def write(self, frame: int, tracks: Tracks) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: MOTWriter already closed")
        if self._f is None:
            self._open()
        for line in mot_lines(frame, tracks):
            self._f.write(line + "\n")
            self.rows += 1

    def close(self) -> None:
        if self._closed:  # the file is complete: a second close must not replace it
            return
        if self._f is None:  # nothing tracked: still leave an (empty) file
            self._open()
        self._f.close()
        self._f = None
        self._tmp.replace(self.path)
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_mot_txt(path: str | Path) -> np.ndarray:
    """A MOTChallenge txt file -> (N, 10) float64 ``frame,id,x,y,w,h,c7,c8,c9,c10``
    (missing trailing columns filled with -1; empty file -> (0, 10))."""
    p = Path(path)
    rows = []
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise MOTFileError(f"{p}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise MOTFileError(f"{p}: not a MOTChallenge text file (not UTF-8 at byte {e.start})"
                           ) from None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.replace(" ", "").split(",")
        try:
            vals = [float(v) for v in parts]
        except ValueError:
            raise MOTFileError(f"{p}:{n}: not a MOTChallenge line (numbers separated by "
                               f"commas): {line[:60]!r}") from None
        if len(vals) < 6:
            raise MOTFileError(f"{p}:{n}: needs at least frame,id,x,y,w,h, got {len(vals)} "
                               "values")
        rows.append((vals + [-1.0] * 10)[:10])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 10)


def write_json(path: str | Path, data: dict) -> None:
    """Write ``data`` as JSON (atomically: a unique temporary file, then a rename)."""
    from ..outputs import atomic_write_text
    atomic_write_text(path, json.dumps(data, indent=1))
