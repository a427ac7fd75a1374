"""Frames in, tracks out: :func:`track_stream` runs a *detect* callable (a list of RGB
images -> their detections) and a tracker over an iterable of frames.

It knows no detector and no source: ``Detector.track`` hands it the detector's
``predict_arrays`` and the frames of the source it opens, and
:func:`damoyolo.workflows.track.track_frames` does the same for any object with
``predict_arrays`` and ``class_names``.

A frame is either an object with ``name``, ``image`` (HxWx3 RGB, or None when the frame
could not be read), ``error`` and ``index`` (what :mod:`damoyolo.infer.sources` yields), or
a bare HxWx3 RGB array (None: a missing image).  Frames that could not be read are reported
(``TrackFrame.error``) and skipped: the tracker is told a frame passed
(:meth:`ByteTrack.skip`) and reading goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from .bytetrack import TRACKERS, Tracks, TrackerError, build_tracker

__all__ = ["TrackFrame", "track_stream"]


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


class _Frame(NamedTuple):
    name: str
    image: np.ndarray | None
    error: str | None
    index: int


def _frames(items: Iterable) -> Iterator:
    """Frame objects as they are; bare arrays (None: no image) as numbered frames."""
    for i, item in enumerate(items):
        if hasattr(item, "image"):
            yield item
        elif item is None:
            yield _Frame(f"array:{i}", None, f"frame {i}: no image", i)
        else:
            yield _Frame(f"array:{i}", np.asarray(item), None, i)


def track_stream(detect: Callable[[list[np.ndarray]], Sequence[Any]], frames: Iterable, *,
                 class_names: list[str] | None = None, tracker="bytetrack",
                 batch_size: int = 1, keep_images: bool = True,
                 **settings) -> Iterator[TrackFrame]:
    """Detect and track frame by frame; yields one :class:`TrackFrame` per frame.

    detect: RGB images -> one detections object per image, with ``boxes`` (K, 4) xyxy
    pixels, ``scores`` (K,) and ``labels`` (K,) (e.g. ``Detector.predict_arrays``);
    frames: see the module docstring; class_names: set on every frame's ``Tracks``;
    tracker: ``"bytetrack"`` or ``"iou"`` (or a tracker object with ``update`` / ``skip``);
    settings: fields of its config class (e.g. ``high_thresh=0.4, max_lost=60``);
    batch_size: frames per ``detect`` call (tracking stays frame by frame).
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
    pending: list = []

    def flush(batch: list) -> Iterator[TrackFrame]:
        good = [f for f in batch if f.image is not None]
        t0 = time.perf_counter()
        dets = detect([f.image for f in good]) if good else []
        det_ms = (time.perf_counter() - t0) * 1e3 / max(len(good), 1)
        it = iter(dets)
        for f in batch:
            if f.image is None:
                trk.skip()
                yield TrackFrame(f.index, f.name, None, None, 0.0, 0.0, f.error)
                continue
            d = next(it)
            t1 = time.perf_counter()
            tr = trk.update(d.boxes, d.scores, d.labels)
            tr.class_names = class_names
            ms = (time.perf_counter() - t1) * 1e3
            yield TrackFrame(f.index, f.name, tr, f.image if keep_images else None, det_ms, ms)

    for frame in _frames(frames):
        pending.append(frame)
        if len(pending) >= max(1, batch_size):
            yield from flush(pending)
            pending = []
    if pending:
        yield from flush(pending)
