"""VideoSource reads on past an undecodable frame, ends at the end of the file, and names
a file that gives no frame at all.  ``cv2.VideoCapture`` is replaced by a scripted capture
that behaves like OpenCV's FFmpeg reader: ``read()`` gives ``(False, None)`` both for a bad
frame and at the end, and ``CAP_PROP_POS_FRAMES`` counts decoded frames only."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from damoyolo.errors import DamoyoloError
from damoyolo.infer.sources import MAX_BAD_FRAMES, VideoReadError, VideoSource


class ScriptedCapture:
    """``script``: per read, True (a frame whose pixels are its index) or False (fails);
    reads past the script fail (the end).  ``count``: what CAP_PROP_FRAME_COUNT says."""

    def __init__(self, script, count):
        self.script, self.count = list(script), count
        self.reads = self.decoded = 0
        self.released = False

    def isOpened(self):
        return True

    def get(self, prop):
        return {cv2.CAP_PROP_FPS: 30.0, cv2.CAP_PROP_FRAME_COUNT: float(self.count),
                cv2.CAP_PROP_POS_FRAMES: float(self.decoded)}.get(prop, 0.0)

    def read(self):
        k = self.reads
        self.reads += 1
        if k < len(self.script) and self.script[k]:
            self.decoded += 1
            img = np.zeros((4, 6, 3), np.uint8)
            img[..., 0] = k  # blue channel in BGR
            return True, img
        return False, None

    def release(self):
        self.released = True


def _source(monkeypatch, script, count, name="clip.mp4", max_frames=None):
    cap = ScriptedCapture(script, count)
    monkeypatch.setattr(cv2, "VideoCapture", lambda spec: cap)
    return VideoSource(name, max_frames), cap


def test_a_bad_middle_frame_is_reported_and_reading_goes_on(monkeypatch):
    src, cap = _source(monkeypatch, [True, True, False, True, True], count=5)
    frames = list(src)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert [f.image is None for f in frames] == [False, False, True, False, False]
    assert frames[2].error == "clip.mp4: frame 2 could not be decoded"
    assert frames[2].name == "clip.mp4:2"
    # RGB, and each good frame is the one read at its index (pixels hold the read index)
    assert [int(f.image[0, 0, 2]) for f in frames if f.image is not None] == [0, 1, 3, 4]
    assert src.bad_frames == [2]
    assert cap.reads == 6 and cap.released  # the end: one failed read after the last frame


def test_the_end_of_the_file_ends_the_stream_without_a_report(monkeypatch):
    src, cap = _source(monkeypatch, [True] * 3, count=3)
    frames = list(src)
    assert [f.error for f in frames] == [None] * 3 and src.bad_frames == []
    assert cap.reads == 4


def test_a_bad_last_frame_the_file_announces_is_reported(monkeypatch):
    src, _ = _source(monkeypatch, [True, True, False], count=3)
    frames = list(src)
    assert [f.image is None for f in frames] == [False, False, True]
    assert "frame 2" in frames[2].error and src.bad_frames == [2]


def test_unknown_length_trailing_failures_are_the_end(monkeypatch):
    src, cap = _source(monkeypatch, [True, False, True], count=0)
    frames = list(src)
    assert [f.image is None for f in frames] == [False, True, False]
    assert src.bad_frames == [1]
    assert cap.reads == 3 + MAX_BAD_FRAMES  # bounded: never loops on a dead stream


def test_a_broken_stream_gives_up_with_one_message(monkeypatch):
    src, cap = _source(monkeypatch, [True, True] + [False] * 1000, count=1000)
    frames = list(src)
    assert cap.reads == 2 + MAX_BAD_FRAMES
    assert len(frames) == 3 and frames[2].index == 2 and frames[2].image is None
    msg = frames[2].error
    assert msg.startswith("clip.mp4: frames 2-26 of the 1000") and "gave up" in msg


def test_max_frames_counts_bad_frames_too(monkeypatch):
    src, cap = _source(monkeypatch, [True, False, True, True, True], count=5, max_frames=3)
    assert len(src) == 3
    assert [f.image is None for f in src] == [False, True, False] and cap.reads == 3


@pytest.mark.parametrize("count", [0, 4])
def test_a_file_that_yields_no_frame_is_a_clear_error(monkeypatch, count):
    src, cap = _source(monkeypatch, [False] * 4, count=count, name="empty.mp4")
    with pytest.raises(VideoReadError, match="empty.mp4: no frame could be decoded"):
        list(src)
    assert issubclass(VideoReadError, DamoyoloError)
    assert cap.reads <= MAX_BAD_FRAMES and cap.released


def test_an_empty_file_is_named_when_opened(tmp_path):
    p = tmp_path / "zero.mp4"
    p.write_bytes(b"")
    with pytest.raises(VideoReadError, match="zero.mp4: cannot open as a video"):
        VideoSource(str(p))
