"""Streamed prediction results: JSON Lines written as frames come, flat memory, kept on failure."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import torch

from damoyolo.infer.results import PredictionWriter, predict_source, read_predictions
from damoyolo.infer.sources import Frame
from damoyolo.postprocess import Detections


class _ManyBoxes:
    """A detector stand-in: ``k`` boxes per image (the code under test is the writer)."""

    def __init__(self, k: int = 30, batch_size: int = 4):
        self.k, self.batch_size = k, batch_size
        self.seen = 0

    def predict_arrays(self, images):
        out = []
        for _ in images:
            self.seen += 1
            g = torch.Generator().manual_seed(self.seen)
            xy = torch.rand(self.k, 2, generator=g) * 50
            out.append(Detections(torch.cat([xy, xy + 10], 1), torch.rand(self.k, generator=g),
                                  torch.randint(0, 3, (self.k,), generator=g), ["a", "b", "c"]))
        return out


class _Video:
    """A synthetic video of ``n`` frames; raises ``fail`` after ``fail_after`` frames."""

    kind, stem, fps = "video", "synth", 30.0

    def __init__(self, n: int, fail_after: int | None = None, fail=RuntimeError("camera lost")):
        self.n, self.fail_after, self.fail = n, fail_after, fail

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        img = np.zeros((64, 64, 3), np.uint8)
        for i in range(self.n):
            if i == self.fail_after:
                raise self.fail
            yield Frame(f"synth:{i}", img, None, i)


def _run(tmp_path, source, det=None, name="out"):
    w = PredictionWriter(tmp_path / name, {"source": "synth"}, kind="video", stem="synth",
                         save_img=False)
    return w, predict_source(det or _ManyBoxes(), source, w)


def test_records_are_streamed_one_line_per_frame(tmp_path):
    w, summary = _run(tmp_path, _Video(10))
    lines = w.path.read_text().splitlines()
    assert len(lines) == 12  # run header, 10 frames, summary
    head, body, tail = read_predictions(w.path)
    assert head == {"type": "run", "source": "synth"}
    assert [r["frame"] for r in body] == list(range(10))
    assert all(len(r["detections"]) == 30 for r in body)
    assert tail == summary == {"type": "summary", "frames": 10, "detections": 300, "errors": 0,
                               "interrupted": False}


def test_memory_stays_flat_over_a_long_video(tmp_path):
    def peak(n):
        tracemalloc.start()
        try:
            _run(tmp_path, _Video(n), name=f"m{n}")
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    short, long = peak(40), peak(400)
    size = (tmp_path / "m400" / "predictions.jsonl").stat().st_size
    # keeping the records would add about the file's size (~1 MB); streaming adds nothing
    assert size > 800_000
    assert long - short < 0.1 * size, (short, long, size)


def test_a_failing_source_keeps_what_it_processed(tmp_path):
    with pytest.raises(RuntimeError, match="camera lost"):
        _run(tmp_path, _Video(20, fail_after=7))  # batches of 4: 4 written, 3 pending
    head, body, tail = read_predictions(tmp_path / "out" / "predictions.jsonl")
    assert [r["frame"] for r in body] == list(range(7))
    assert tail["interrupted"] and tail["frames"] == 7
    assert "camera lost" in tail["failure"]


def test_ctrl_c_ends_the_run_with_a_summary(tmp_path):
    w, summary = _run(tmp_path, _Video(20, fail_after=5, fail=KeyboardInterrupt()))
    assert summary["frames"] == 5 and summary["interrupted"] and "failure" not in summary
    assert len(w.path.read_text().splitlines()) == 7


def test_a_killed_run_leaves_complete_lines(tmp_path):
    """Every written line is flushed: readable before the writer is closed."""
    w = PredictionWriter(tmp_path / "k", {"source": "synth"}, kind="video", save_img=False)
    det = _ManyBoxes(k=2)
    frames = list(_Video(3))
    for f, d in zip(frames, det.predict_arrays([f.image for f in frames])):
        w.write(f, d)
    lines = [json.loads(x) for x in w.path.read_text().splitlines()]
    assert [x["type"] for x in lines] == ["run", "frame", "frame", "frame"]
    w.close()


def _images(n=2):
    img = np.zeros((64, 64, 3), np.uint8)
    return [Frame(f"img{i}.jpg", img, None, i) for i in range(n)]


@pytest.mark.parametrize("blocked", ["img0.jpg", "labels/img1.txt", "encoder"])
def test_an_unwritable_output_is_one_line_naming_it(tmp_path, blocked, monkeypatch):
    """A file that cannot be written (a folder in its place, an encoder that fails) ends the
    run with an OutputError naming it (one line from the command), not a bare OSError; the
    summary records the failure."""
    from damoyolo.errors import DamoyoloError
    from damoyolo.outputs import OutputError
    out = tmp_path / "o"
    if blocked == "encoder":
        import cv2
        monkeypatch.setattr(cv2, "imwrite", lambda *a, **k: False)
        named = out / "img0.jpg"
    else:
        named = out / blocked
        named.mkdir(parents=True)
    w = PredictionWriter(out, {"source": "synth"}, kind="images", save_txt=True)
    with pytest.raises(OutputError) as e:
        predict_source(_ManyBoxes(k=2), _images(), w)
    msg = str(e.value)
    assert isinstance(e.value, DamoyoloError) and len(msg.splitlines()) == 1
    assert msg.startswith(f"{named}: could not be written"), msg
    _, _, summary = read_predictions(w.path)
    assert summary["interrupted"] and "OutputError" in summary["failure"]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp.jpg")
                or p.name.endswith(".tmp.txt")]


def test_an_unwritable_output_folder_is_one_line(tmp_path):
    from damoyolo.outputs import OutputError
    (tmp_path / "f").write_text("x")  # a file where the folder should be
    with pytest.raises(OutputError, match="could not be written"):
        PredictionWriter(tmp_path / "f" / "o", {"source": "synth"}, kind="images")
