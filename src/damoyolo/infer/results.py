"""Prediction outputs, streamed: JSON Lines, annotated images or video, YOLO txt labels.

:func:`predict_source` runs a :class:`~damoyolo.infer.detector.Detector` over a source of
:mod:`~damoyolo.infer.sources` and hands every image or frame to a
:class:`PredictionWriter` as soon as it is detected; nothing is kept per frame, so a
camera can run for hours in constant memory, and a run that stops (Ctrl-C, a crash, a
source that fails) leaves every record it wrote.

``predictions.jsonl`` (docs/inference.md): one JSON object per line, flushed as written:

- first ``{"type": "run", "weights", "backend", "source", "class_names", "conf", "iou",
  "input_size"}``;
- per image ``{"type": "image", "image", "height", "width", "detections": [...],
  "annotated"}`` or per frame ``{"type": "frame", "frame", "height", "width",
  "detections": [...]}``, each detection ``{"box": [x1, y1, x2, y2], "score", "label",
  "name"}`` in original-image pixels;
- per unreadable file ``{"type": "error", "image", "error"}``;
- last ``{"type": "summary", "images" or "frames", "detections", "errors",
  "interrupted"}``, with ``"failure"`` when an error ended the run (no summary when the
  process was killed).
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from ..outputs import OutputError, atomic_output, atomic_write_text, temporary_path

__all__ = ["DISPLAY_CONF", "PredictionWriter", "predict_source", "read_predictions",
           "yolo_lines"]

JSONL_NAME = "predictions.jsonl"

DISPLAY_CONF = 0.25
"""Default score threshold of ``damoyolo predict``: boxes worth showing.  Evaluation
(``damoyolo val``, :class:`~damoyolo.Detector` by default) keeps the preset's low threshold
(0.03 for the nano models, 0.05 for T-L), which maximises mAP but draws hundreds of boxes."""


def yolo_lines(det, hw: tuple[int, int]) -> list[str]:
    """YOLO txt rows ``class xc yc w h conf`` (normalised to the image ``hw``)."""
    h, w = hw
    return [f"{int(lab)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} "
            f"{(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f} {s:.5f}"
            for (x1, y1, x2, y2), s, lab in zip(det.boxes.tolist(), det.scores.tolist(),
                                                det.labels.tolist())]


@contextlib.contextmanager
def _writing(path: Path):
    """An ``OSError`` while writing ``path`` (permissions, a full disk, a folder in the way)
    as an :class:`~damoyolo.outputs.OutputError` naming it: one line, not a traceback."""
    try:
        yield
    except OutputError:
        raise
    except OSError as e:
        raise OutputError(f"{path}: could not be written ({e.strerror or e})") from None


class PredictionWriter:
    """Writes the outputs of one run into ``out`` as they come (module docstring).

    kind: ``"images"`` or ``"video"`` (the source's ``kind``); stem, fps: the video's name
    and rate for the annotated ``<stem>.mp4``; save_img: annotated images / video;
    save_txt: ``labels/<stem>.txt`` per image or frame.
    """

    def __init__(self, out: str | Path, run: dict, kind: str = "images", stem: str = "video",
                 fps: float = 25.0, save_img: bool = True, save_txt: bool = False):
        self.out = Path(out)
        self.kind, self.stem, self.fps = kind, stem, float(fps)
        self.save_img, self.save_txt = save_img, save_txt
        self.path = self.out / JSONL_NAME
        with _writing(self.out):
            self.out.mkdir(parents=True, exist_ok=True)
            if save_txt:
                (self.out / "labels").mkdir(exist_ok=True)
        # appended: a folder reused with --exist-ok keeps every run's records (each run
        # starts with its "run" line)
        with _writing(self.path):
            self._file = open(self.path, "a", encoding="utf-8")
        self._used: set[str] = set()
        self._video = None
        self.records = self.detections = self.errors = 0
        self._line({"type": "run", **run})

    def _line(self, obj: dict) -> None:
        self._file.write(json.dumps(obj) + "\n")
        self._file.flush()

    def _unique(self, stem: str) -> str:
        name, i = stem, 1
        while name in self._used:
            name, i = f"{stem}_{i}", i + 1
        self._used.add(name)
        return name

    def write(self, frame, det) -> None:
        """One image or frame (:class:`~damoyolo.infer.sources.Frame`) and its Detections
        in original-image pixels."""
        import cv2

        from ..viz import draw_detections
        hw = frame.image.shape[:2]
        if self.kind == "images":
            stem = self._unique(Path(frame.name).stem)
            rec = {"type": "image", "image": frame.name, "height": hw[0], "width": hw[1],
                   "detections": det.to_list()}
            if self.save_img:
                path = self.out / f"{stem}.jpg"
                with _writing(path), atomic_output(path) as tmp:
                    if not cv2.imwrite(str(tmp), draw_detections(frame.image, det)[:, :, ::-1]):
                        raise OutputError(f"{path}: could not be written")
                rec["annotated"] = str(path)
        else:
            stem = f"{self.stem}_{frame.index:06d}"
            rec = {"type": "frame", "frame": frame.index, "height": hw[0], "width": hw[1],
                   "detections": det.to_list()}
            if self.save_img:
                if self._video is None:  # a temporary file until close() renames it
                    with _writing(self.out / f"{self.stem}.mp4"):
                        self._video_path = temporary_path(self.out / f"{self.stem}.mp4")
                    self._video = cv2.VideoWriter(str(self._video_path),
                                                  cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                                  (hw[1], hw[0]))
                    if not self._video.isOpened():
                        self._video = None
                        self._video_path.unlink(missing_ok=True)
                        raise OutputError(f"{self.out / f'{self.stem}.mp4'}: could not be "
                                          f"written (this OpenCV cannot write mp4v video, or "
                                          f"the folder is not writable; --no-save-img skips it)")
                self._video.write(draw_detections(frame.image, det)[:, :, ::-1])
        if self.save_txt:
            label = self.out / "labels" / f"{stem}.txt"
            with _writing(label):
                atomic_write_text(label, "".join(ln + "\n" for ln in yolo_lines(det, hw)))
        self.records += 1
        self.detections += len(det)
        self._line(rec)

    def error(self, frame) -> None:
        """An unreadable file (a Frame without image)."""
        self.errors += 1
        self._line({"type": "error", "image": frame.name, "error": frame.error})

    def close(self, interrupted: bool = False, failure: str | None = None) -> dict:
        """Write the summary line, close the files; returns the summary.  ``failure``: the
        error that ended the run early (the summary is then marked interrupted)."""
        what = "frames" if self.kind == "video" else "images"
        summary = {"type": "summary", what: self.records, "detections": self.detections,
                   "errors": self.errors, "interrupted": bool(interrupted or failure)}
        if failure:
            summary["failure"] = failure
        if not self._file.closed:
            self._line(summary)
            self._file.close()
        if self._video is not None:
            self._video.release()
            self._video = None
            with _writing(self.out / f"{self.stem}.mp4"):
                self._video_path.replace(self.out / f"{self.stem}.mp4")
        return summary


def predict_source(det, source, writer: PredictionWriter, progress=None) -> dict:
    """Detect on every image or frame of ``source`` in batches of ``det.batch_size``; each
    result goes to ``writer`` at once.  Ctrl-C ends the run with a summary marked
    ``interrupted``; an error of the source first writes the frames read before it, then
    propagates.  Returns the summary."""

    def flush(frames):
        if frames:
            for f, d in zip(frames, det.predict_arrays([f.image for f in frames])):
                writer.write(f, d)
                if progress is not None:
                    progress.update()
            frames.clear()

    pending: list = []
    interrupted, failure = False, None
    it = iter(source)
    try:
        while True:
            try:
                frame = next(it)
            except StopIteration:
                break
            except BaseException:  # the source failed: keep what it gave
                flush(pending)
                raise
            if frame.image is None:
                writer.error(frame)
                print(f"\nskipped {frame.error}", file=sys.stderr)
                if progress is not None:
                    progress.update()
                continue
            pending.append(frame)
            if len(pending) >= det.batch_size:
                flush(pending)
        flush(pending)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: closing the outputs of what was processed", file=sys.stderr)
    except BaseException as e:
        failure = f"{type(e).__name__}: {e}"
        raise
    finally:
        if progress is not None:
            progress.close()
        summary = writer.close(interrupted, failure)
    return summary


def read_predictions(path: str | Path) -> tuple[dict, list[dict], dict | None]:
    """A ``predictions.jsonl`` -> (run header, records and errors, summary or None) of its
    last run (a folder reused with ``--exist-ok`` holds one run after another)."""
    lines = [json.loads(ln) for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln]
    starts = [i for i, ln in enumerate(lines) if ln.get("type") == "run"]
    if starts:
        lines = lines[starts[-1]:]
    head = lines[0] if lines and lines[0].get("type") == "run" else {}
    summary = lines[-1] if lines and lines[-1].get("type") == "summary" else None
    body = lines[1 if head else 0: -1 if summary else None]
    return head, body, summary
