"""Input sources for prediction: an image, a directory, a glob, a video file or a camera.

:func:`open_source` returns an :class:`ImageSource` (files) or a :class:`VideoSource`
(video file or camera index).  Iterating yields :class:`Frame` items with an HxWx3 uint8
**RGB** image, or an error message for an unreadable file or an undecodable video frame
(the caller reports and counts it, and goes on with the rest).
"""

from __future__ import annotations

import glob
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import DamoyoloError, MissingFileError
from ..preprocess import IMAGE_SUFFIXES, ImageReadError, read_image

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "MAX_BAD_FRAMES", "Frame", "ImageSource",
           "VideoSource", "VideoReadError", "open_source", "Progress"]

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}

MAX_BAD_FRAMES = 25
"""Consecutive video frames that fail to decode before the stream is taken as ended."""


class VideoReadError(DamoyoloError, RuntimeError):
    """A video file or camera gives no decodable frame; the message names it."""


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
    """Frames of a video file or a camera (``cv2.VideoCapture``), converted to RGB.

    A frame that fails to decode is yielded as a :class:`Frame` with ``image=None`` and
    ``error`` naming the source and the frame index, and reading goes on; its index is also
    kept in ``bad_frames``.  The stream ends at the end of the file: a failed read once the
    frames the file announces (``CAP_PROP_FRAME_COUNT``) are all read, or after
    :data:`MAX_BAD_FRAMES` failures in a row (a broken stream, or a source whose length is
    unknown).  Failures at the end of a file that announces more frames are reported in one
    message.  A source that gives no frame at all raises :class:`VideoReadError`.
    """

    kind = "video"

    def __init__(self, spec: str | int, max_frames: int | None = None):
        import cv2
        self.spec = spec
        self.is_camera = isinstance(spec, int)
        self.cap = cv2.VideoCapture(spec)
        if not self.cap.isOpened():
            if not self.is_camera and Path(str(spec)).is_file():
                raise VideoReadError(f"{spec}: cannot open as a video (empty or damaged file, "
                                     f"or a codec this OpenCV build lacks)")
            what = f"camera {spec}" if self.is_camera else f"{spec}"
            raise MissingFileError(f"{what}: cannot open video source")
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 25.0
        w = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        h = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        if w > 0 and h > 0:  # frame size checked against the pixel limit before decoding
            from ..imageheader import ImageTooLargeError, check_image_pixels
            try:
                check_image_pixels((h, w), f"{spec}: video frames")
            except ImageTooLargeError as e:
                self.cap.release()
                raise VideoReadError(str(e)) from None
        n = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.count = None if self.is_camera or n <= 0 else n  # frames the file announces
        self.total = self.count
        if max_frames is not None:
            self.total = min(self.total or max_frames, max_frames)
        self.max_frames = max_frames
        self.description = f"camera {spec}" if self.is_camera else str(spec)
        self.stem = f"camera{spec}" if self.is_camera else Path(str(spec)).stem
        self.bad_frames: list[int] = []

    def __len__(self) -> int:
        return self.total or 0

    def _bad(self, j: int, message: str | None = None) -> Frame:
        return Frame(f"{self.description}:{j}", None,
                     message or f"{self.description}: frame {j} could not be decoded", j)

    def __iter__(self) -> Iterator[Frame]:
        import cv2
        cap, count = self.cap, self.count
        i = good = 0          # i: index of the frame the next read returns (one per read)
        bad: list[int] = []   # failed reads not (yet) followed by a good frame
        gave_up = False
        try:
            while self.max_frames is None or i < self.max_frames:
                ok, bgr = cap.read()
                if ok and bgr is not None:
                    for j in bad:  # failures in the middle of the stream: skipped, reported
                        yield self._bad(j)
                    bad = []
                    good += 1
                    yield Frame(f"{self.description}:{i}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
                                None, i)
                    i += 1
                    continue
                # the capture's position counts decoded frames only, i every read: either
                # reaching the announced count is the end of the file
                if count is not None and (i >= count or
                                          cap.get(cv2.CAP_PROP_POS_FRAMES) >= count):
                    break
                bad.append(i)
                self.bad_frames.append(i)
                i += 1
                if len(bad) >= MAX_BAD_FRAMES:
                    gave_up = True
                    break
            if good == 0 and (self.max_frames is None or self.max_frames > 0):
                told = f" (it announces {count} frames)" if count else ""
                raise VideoReadError(f"{self.description}: no frame could be decoded{told}")
            if bad and count is None:  # unknown length: trailing failures are the end
                del self.bad_frames[-len(bad):]
            elif len(bad) == 1 and not gave_up:
                yield self._bad(bad[0])
            elif bad:
                why = f"; gave up after {len(bad)} failures in a row" if gave_up else ""
                yield self._bad(bad[0], f"{self.description}: frames {bad[0]}-{bad[-1]} of the "
                                        f"{count} it announces could not be decoded{why}; "
                                        f"the stream ends at frame {bad[0]}")
        finally:
            cap.release()


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
