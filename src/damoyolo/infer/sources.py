"""Input sources for prediction: an image, a directory, a glob, a video file or a camera.

:func:`open_source` returns an :class:`ImageSource` (files) or a :class:`VideoSource`
(video file or camera index).  Iterating yields :class:`Frame` items with an HxWx3 uint8
**RGB** image, or an error message for an unreadable file (the caller reports it and
goes on with the rest).
"""

from __future__ import annotations

import glob
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import MissingFileError
from ..preprocess import IMAGE_SUFFIXES, ImageReadError, read_image

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "Frame", "ImageSource", "VideoSource",
           "open_source", "Progress"]

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}


@dataclass
class Frame:
    """One input: ``image`` HxWx3 uint8 RGB, or ``None`` with ``error`` set."""

    name: str                    # file path, or "<video>:<frame index>"
    image: np.ndarray | None
    error: str | None = None
    index: int = 0               # position in the source


class ImageSource:
    """Image files, read one by one in sorted order."""

    kind = "images"

    def __init__(self, files: list[Path], description: str):
        self.files = files
        self.description = description

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[Frame]:
        for i, f in enumerate(self.files):
            try:
                yield Frame(str(f), read_image(f), None, i)
            except ImageReadError as e:
                yield Frame(str(f), None, str(e), i)


class VideoSource:
    """Frames of a video file or a camera (``cv2.VideoCapture``), converted to RGB."""

    kind = "video"

    def __init__(self, spec: str | int, max_frames: int | None = None):
        import cv2
        self.spec = spec
        self.is_camera = isinstance(spec, int)
        self.cap = cv2.VideoCapture(spec)
        if not self.cap.isOpened():
            what = f"camera {spec}" if self.is_camera else f"{spec}"
            raise MissingFileError(f"{what}: cannot open video source")
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 25.0
        n = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.total = None if self.is_camera or n <= 0 else n
        if max_frames is not None:
            self.total = min(self.total or max_frames, max_frames)
        self.max_frames = max_frames
        self.description = f"camera {spec}" if self.is_camera else str(spec)
        self.stem = f"camera{spec}" if self.is_camera else Path(str(spec)).stem

    def __len__(self) -> int:
        return self.total or 0

    def __iter__(self) -> Iterator[Frame]:
        import cv2
        i = 0
        try:
            while self.max_frames is None or i < self.max_frames:
                ok, bgr = self.cap.read()
                if not ok:
                    break
                yield Frame(f"{self.description}:{i}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
                            None, i)
                i += 1
        finally:
            self.cap.release()


def open_source(spec: str | int, max_frames: int | None = None) -> ImageSource | VideoSource:
    """Resolve ``spec``: camera index (int or digits), video file, image, directory or glob."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return VideoSource(int(spec), max_frames)
    p = Path(spec)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in
                       IMAGE_SUFFIXES)
        if not files:
            raise MissingFileError(f"{p}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return ImageSource(files, str(p))
    if p.is_file():
        if p.suffix.lower() in VIDEO_SUFFIXES:
            return VideoSource(str(p), max_frames)
        return ImageSource([p], str(p))
    if any(c in str(spec) for c in "*?["):
        files = sorted(Path(f) for f in glob.glob(str(spec), recursive=True)
                       if Path(f).is_file() and Path(f).suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise MissingFileError(f"{spec}: the pattern matches no image files")
        return ImageSource(files, str(spec))
    raise MissingFileError(f"{spec}: no such file, directory, glob match or camera index")


class Progress:
    """A minimal progress line on stderr (``n/total``, rate); silent when not enabled."""

    def __init__(self, total: int | None, desc: str, enabled: bool = True):
        self.total, self.desc, self.n = total, desc, 0
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self._last = 0.0

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.perf_counter()
        if self.enabled and (now - self._last > 0.2 or self.n == self.total):
            self._last = now
            rate = self.n / max(now - self.t0, 1e-9)
            tot = f"/{self.total}" if self.total else ""
            pct = f" {100 * self.n / self.total:3.0f}%" if self.total else ""
            sys.stderr.write(f"\r{self.desc}:{pct} {self.n}{tot} [{rate:.1f} it/s]")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.n:
            sys.stderr.write("\n")
            sys.stderr.flush()
