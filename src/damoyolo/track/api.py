"""Frames in, tracks out: :func:`track_frames` runs a :class:`~damoyolo.Detector` and a
tracker over a source (``Detector.track`` calls it).

A source is anything :func:`damoyolo.infer.sources.open_source` takes (video file, camera
index, image, directory, glob), an iterable of HxWx3 RGB arrays, or a ready source object.
Video frames that cannot be decoded are reported (``TrackFrame.error``) and skipped: the
tracker is told a frame passed (:meth:`ByteTrack.skip`) and reading goes on
(:class:`~damoyolo.infer.sources.VideoSource` yields such frames with ``error`` set).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..infer.sources import Frame
from .bytetrack import TRACKERS, Tracks, TrackerError, build_tracker

__all__ = ["TrackFrame", "track_frames", "iter_frames"]


@dataclass
class TrackFrame:
    """One frame's result: ``tracks`` (None when the frame could not be read, then
    ``error`` says why), the frame ``image`` (RGB) and the time spent detecting and
    tracking it in milliseconds (detection time is the batch's time divided by its size)."""

    index: int                   # 0-based position in the source
    name: str
    tracks: Tracks | None
    image: np.ndarray | None
    det_ms: float = 0.0
    track_ms: float = 0.0
    error: str | None = None

    @property
    def frame(self) -> int:
        """1-based frame number (MOTChallenge)."""
        return self.index + 1


def iter_frames(source) -> Iterator[Frame]:
    """Frames of any source (see the module docstring), unreadable ones with ``error``."""
    from ..infer.sources import open_source
    if isinstance(source, (str, int)) or hasattr(source, "__fspath__"):
        source = open_source(str(source) if hasattr(source, "__fspath__") else source)
    if hasattr(source, "kind"):  # ImageSource, VideoSource
        yield from iter(source)
        return
    for i, img in enumerate(source):
        if isinstance(img, Frame):
            yield img
        elif img is None:
            yield Frame(f"array:{i}", None, f"frame {i}: no image", i)
        else:
            yield Frame(f"array:{i}", np.asarray(img), None, i)


def track_frames(detector, source, tracker: str = "bytetrack", batch_size: int = 1,
                 keep_images: bool = True, **settings) -> Iterator[TrackFrame]:
    """Detect and track frame by frame; yields one :class:`TrackFrame` per source frame.

    tracker: ``"bytetrack"`` or ``"iou"`` (or a tracker object with ``update`` / ``skip``);
    settings: fields of its config class (e.g. ``high_thresh=0.4, max_lost=60``).
    batch_size: frames per detector call (tracking stays frame by frame).
    """
    if isinstance(tracker, str):
        if tracker not in TRACKERS:
            raise TrackerError(f"unknown tracker {tracker!r}; choose one of "
                               f"{', '.join(TRACKERS)}")
        trk = build_tracker(tracker, **settings)
    else:
        if settings:
            raise TrackerError("tracker settings go with a tracker name, not a tracker object")
        trk = tracker
    names = detector.class_names
    pending: list[Frame] = []

    def flush(frames: list[Frame]) -> Iterator[TrackFrame]:
        good = [f for f in frames if f.image is not None]
        t0 = time.perf_counter()
        dets = detector.predict_arrays([f.image for f in good]) if good else []
        det_ms = (time.perf_counter() - t0) * 1e3 / max(len(good), 1)
        it = iter(dets)
        for f in frames:
            if f.image is None:
                trk.skip()
                yield TrackFrame(f.index, f.name, None, None, 0.0, 0.0, f.error)
                continue
            d = next(it)
            t1 = time.perf_counter()
            tr = trk.update(d.boxes, d.scores, d.labels)
            tr.class_names = names
            ms = (time.perf_counter() - t1) * 1e3
            yield TrackFrame(f.index, f.name, tr, f.image if keep_images else None, det_ms, ms)

    for frame in iter_frames(source):
        pending.append(frame)
        if len(pending) >= max(1, batch_size):
            yield from flush(pending)
            pending = []
    if pending:
        yield from flush(pending)
