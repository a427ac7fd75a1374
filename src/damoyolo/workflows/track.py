"""Tracking runs: a source, a :class:`~damoyolo.Detector` and a tracker, and the files they
write (what ``damoyolo track`` runs; docs/tracking.md).

* :func:`iter_frames` and :func:`track_frames`: any source (video file, camera index, image,
  directory, glob, an opened source, or an iterable of RGB arrays) tracked with any detector
  (an object with ``predict_arrays`` and ``class_names``), frame by frame.
* :class:`TrackOptions` and :func:`run_tracking`: one run into an output folder, which is
  claimed only once the tracker settings, the ground truth, the source and the detector have
  opened: the MOT txt, ``tracks.json`` (settings, tracks and timings per frame, the MOT
  metrics when there is ground truth), and the annotated video (video sources) or frames
  (image sources; every video frame too with ``save_frames``).  ``source="demo"`` writes a
  synthetic video with its ground truth into the folder and evaluates on it.
* :func:`tracker_settings`: the settings a run hands its tracker.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from ..config import ConfigError, apply_overrides
from ..infer.sources import Frame
from ..track.api import TrackFrame, track_stream
from ..track.bytetrack import TRACKERS, TrackerError, _replace

__all__ = ["iter_frames", "track_frames", "tracker_settings", "TrackOptions", "run_tracking"]

_IOU_NAMED = ("high_thresh", "match_iou", "min_hits")  # the named settings the iou tracker has


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

    detector: a :class:`~damoyolo.Detector`, or any object with ``predict_arrays`` (RGB
    arrays -> detections) and ``class_names``; the rest as in
    :func:`damoyolo.track.api.track_stream`.
    """
    yield from track_stream(detector.predict_arrays, iter_frames(source),
                            class_names=detector.class_names, tracker=tracker,
                            batch_size=batch_size, keep_images=keep_images, **settings)


def _unchecked(cls: type) -> type:
    """``cls``'s fields, types and defaults without its checks across fields, so that
    overrides are checked one by one for name and type, and their combination once."""
    import typing
    hints = typing.get_type_hints(cls)
    return dataclasses.make_dataclass(
        cls.__name__, [(f.name, hints[f.name],
                        field(default=f.default, default_factory=f.default_factory))
                       for f in dataclasses.fields(cls)], frozen=True)


def tracker_settings(tracker: str, named: Mapping[str, Any] | None = None,
                     track_buffer: int = 30, per_class: bool = False,
                     overrides: tuple[str, ...] | list[str] = (),
                     fps: float | None = None) -> dict:
    """The settings (fields of the tracker's config class) a run hands its tracker.

    named: settings given by name (None: not given); the ``iou`` tracker takes only
    ``high_thresh``, ``match_iou`` and ``min_hits`` of them.  track_buffer: frames a lost
    ByteTrack track is kept, at 30 fps (``max_lost`` scaled by the video's ``fps``).
    per_class: associate within a class only.  overrides: ``"KEY=VALUE"`` strings, applied
    last with :func:`damoyolo.config.apply_overrides` (an unknown key is an error with the
    close matches; values parsed as Python literals and typed by the field).  The settings
    are checked together against the config class; every error is a
    :class:`~damoyolo.track.TrackerError` in one line.
    """
    if tracker not in TRACKERS:
        raise TrackerError(f"unknown tracker {tracker!r}; choose one of {', '.join(TRACKERS)}")
    _, cfg_cls = TRACKERS[tracker]
    s = {k: v for k, v in (named or {}).items() if v is not None}
    if tracker == "bytetrack":
        scale = (fps or 30.0) / 30.0
        s["max_lost"] = max(0, int(round(track_buffer * scale)))
    else:
        s = {k: v for k, v in s.items() if k in _IOU_NAMED}
    if per_class:
        s["per_class"] = True
    if overrides:
        loose = _unchecked(cfg_cls)()
        for item in overrides:
            try:
                loose = apply_overrides(loose, [item])
            except ConfigError as e:
                raise TrackerError(f"{cfg_cls.__name__}: {e}") from None
            key = item.split("=", 1)[0].strip()
            s[key] = getattr(loose, key)
    _replace(cfg_cls(), s)  # names and values, together
    return s


@dataclass(frozen=True)
class TrackOptions:
    """One tracking run (:func:`run_tracking`); ``damoyolo track`` fills it from its flags.

    weights: checkpoint or export; detector: :class:`~damoyolo.Detector` keyword arguments
    other than ``weights`` and ``conf`` (its ``batch_size`` is also the frames per detector
    call, default 1); conf: detector score threshold (None: the tracker's lowest score
    used).  source: video file, camera index, image folder, glob, or ``"demo"`` (a synthetic
    video of ``demo_frames`` frames, ``demo_size`` px wide, ``demo_objects`` objects,
    ``demo_seed``, written into the output folder with its ground truth and evaluated).
    tracker, settings, track_buffer, per_class, overrides: see :func:`tracker_settings`.
    out, exist_ok: the output folder (:func:`damoyolo.outputs.claim_output_folder`).
    trails: centres drawn per track; save_video: the annotated video (image sources: the
    annotated frames); save_frames: also every annotated video frame; gt: MOTChallenge
    ground truth to evaluate against; max_frames: stop a video or camera there.
    """

    weights: str
    source: str | int
    out: str = "runs/track"
    exist_ok: bool = False
    detector: Mapping[str, Any] = field(default_factory=dict)
    conf: float | None = None
    tracker: str = "bytetrack"
    settings: Mapping[str, Any] = field(default_factory=dict)
    track_buffer: int = 30
    per_class: bool = False
    overrides: tuple[str, ...] = ()
    trails: int = 0
    save_video: bool = True
    save_frames: bool = False
    gt: str | None = None
    max_frames: int | None = None
    progress: bool = True
    demo_frames: int = 150
    demo_seed: int = 0
    demo_objects: int = 8
    demo_size: int = 320


class _RunFiles:
    """What a run writes frame by frame: the MOT txt, the annotated video (video sources)
    and the annotated frames (image sources, or ``save_frames``)."""

    def __init__(self, out: Path, stem: str, is_video: bool, fps: float | None,
                 opts: TrackOptions):
        from ..track.draw import TrackDrawer
        from ..track.io import MOTWriter
        self.is_video, self.fps = is_video, fps
        self.save_video, self.save_frames = opts.save_video, opts.save_frames
        self.drawer = TrackDrawer(opts.trails)
        self.frames_dir = out / "frames"
        if self.save_frames or (not is_video and self.save_video):
            self.frames_dir.mkdir(exist_ok=True)
        self.video_path = out / f"{stem}_tracked.mp4"
        self.video = None
        self.mot_path = out / f"{stem}.txt"
        self.mot = MOTWriter(self.mot_path)

    def draw(self, r: TrackFrame) -> None:
        """The annotated frame into the video and / or the frames folder, as asked."""
        import cv2

        from ..outputs import OutputError, atomic_output
        if not self.save_video and not self.save_frames:
            return
        drawn = self.drawer(r.image, r.tracks)[:, :, ::-1]
        if self.is_video and self.save_video:
            self._video_frame(drawn)
        if self.save_frames or not self.is_video:
            name = (f"{r.frame:06d}.jpg" if self.is_video else
                    f"{r.frame:06d}_{Path(r.name).stem}.jpg")
            with atomic_output(self.frames_dir / name) as tmp:
                if not cv2.imwrite(str(tmp), drawn):
                    raise OutputError(f"{self.frames_dir / name}: could not be written")

    def _video_frame(self, drawn: np.ndarray) -> None:
        import cv2

        from ..outputs import OutputError, temporary_path
        if self.video is None:
            h, w = drawn.shape[:2]
            tmp = temporary_path(self.video_path)
            vw = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"),
                                 float(self.fps or 25.0), (w, h))
            if not vw.isOpened():  # not kept: nothing to rename in the end
                tmp.unlink(missing_ok=True)
                raise OutputError(f"{self.video_path}: this OpenCV cannot write mp4v video "
                                  f"(use --no-save-video)")
            self.video, self._video_tmp = vw, tmp
        self.video.write(np.ascontiguousarray(drawn))

    def close(self) -> None:
        self.mot.close()
        if self.video is not None:
            self.video.release()
            self._video_tmp.replace(self.video_path)


def _open_demo(out: Path, opts: TrackOptions) -> dict:
    from ..track.video import write_synth_video
    info = write_synth_video(out / "demo.mp4", frames=opts.demo_frames, seed=opts.demo_seed,
                             size=opts.demo_size, objects=opts.demo_objects)
    print(f"synthetic video: {info['frames']} frames, {info['objects']} objects, "
          f"{info['width']}x{info['height']} -> {info['video']} (ground truth {info['gt']})")
    return info


def run_tracking(opts: TrackOptions) -> int:
    """Track ``opts.source`` into an output folder (see the module docstring), printing a
    summary.  Returns 0, or 1 when frames were given but none could be read."""
    from ..infer.detector import Detector
    from ..infer.sources import Progress, open_source
    from ..outputs import claim_output_folder, source_inputs
    from ..track.io import read_mot_txt, write_json

    def settings(fps: float | None) -> dict:
        return tracker_settings(opts.tracker, opts.settings, opts.track_buffer, opts.per_class,
                                opts.overrides, fps)

    first = settings(None)  # names and values, before any work
    _, cfg_cls = TRACKERS[opts.tracker]
    demo = opts.source == "demo"
    gt_path = Path(opts.gt) if opts.gt else None
    gt = read_mot_txt(gt_path) if gt_path else None
    if gt is not None or demo:  # fail before the work when it cannot run
        from .._optional import import_optional
        import_optional("motmetrics", "MOT evaluation (--gt, --source demo)")
    source_spec, min_visibility, source = opts.source, None, None
    if not demo:  # everything that can fail is opened before the output folder
        source = open_source(source_spec, opts.max_frames)
    # the class defaults, as before: an iou tracker's own high_thresh does not lower it
    low = first.get("low_thresh", getattr(cfg_cls, "low_thresh", cfg_cls.high_thresh))
    det = Detector(opts.weights, conf=opts.conf if opts.conf is not None else float(low),
                   **opts.detector)
    inputs = [opts.weights, opts.gt] + ([] if source is None
                                        else source_inputs(source, opts.source))
    out = claim_output_folder(opts.out, opts.exist_ok, inputs)
    if demo:
        from ..track.video import MIN_VISIBILITY
        info = _open_demo(out, opts)
        min_visibility, source_spec = MIN_VISIBILITY, info["video"]
        source = open_source(source_spec, opts.max_frames)
        if gt_path is None:
            gt_path = Path(info["gt"])
            gt = read_mot_txt(gt_path)
    fps = float(getattr(source, "fps", 0) or 0) or None
    tracking = settings(fps)

    is_video = source.kind == "video"
    src_path = Path(str(source_spec))
    stem = source.stem if is_video else (src_path.name if src_path.is_dir() else "tracks")
    progress = Progress(len(source) or None, "track", enabled=opts.progress)
    records, errors, det_ms, trk_ms = [], [], [], []
    ids: set[int] = set()
    files = _RunFiles(out, stem, is_video, fps, opts)
    try:
        for r in track_frames(det, source, tracker=opts.tracker,
                              batch_size=opts.detector.get("batch_size", 1), **tracking):
            progress.update()
            if r.tracks is None:
                errors.append({"frame": r.frame, "name": r.name, "error": r.error})
                print(f"\nskipped {r.error}", file=sys.stderr)
                continue
            files.mot.write(r.frame, r.tracks)
            ids.update(r.tracks.ids.tolist())
            det_ms.append(r.det_ms)
            trk_ms.append(r.track_ms)
            rec = {"frame": r.frame, "name": r.name, "det_ms": round(r.det_ms, 3),
                   "track_ms": round(r.track_ms, 4), "tracks": r.tracks.to_list()}
            files.draw(r)
            records.append(rec)
    except KeyboardInterrupt:
        print("\ninterrupted: writing what was processed", file=sys.stderr)
    finally:
        progress.close()
        files.close()
    timing = {"det_ms_mean": float(np.mean(det_ms)) if det_ms else 0.0,
              "track_ms_mean": float(np.mean(trk_ms)) if trk_ms else 0.0,
              "track_ms_max": float(np.max(trk_ms)) if trk_ms else 0.0}
    result = {"weights": str(opts.weights), "backend": det.backend.name,
              "source": str(opts.source), "tracker": opts.tracker, "settings": tracking,
              "class_names": det.class_names, "conf": det.conf, "iou": det.iou,
              "input_size": list(det.input_size), "timing": timing,
              "mot_txt": str(files.mot_path), "frames": records, "errors": errors}
    if files.video is not None:
        result["video"] = str(files.video_path)
    print(f"{len(records)} frames, {len(ids)} tracks, {len(errors)} unreadable; per frame: "
          f"detection {timing['det_ms_mean']:.1f} ms, tracking {timing['track_ms_mean']:.3f} ms")
    if gt is not None:
        from ..track.metrics import evaluate_mot
        m = evaluate_mot(gt, read_mot_txt(files.mot_path), min_visibility=min_visibility)
        result["metrics"] = m
        print(f"MOTA {m['mota']:.3f}  IDF1 {m['idf1']:.3f}  ID switches "
              f"{m['num_switches']:.0f}  FP {m['num_false_positives']:.0f}  FN "
              f"{m['num_misses']:.0f}  (ground truth {gt_path}, IoU 0.5)")
    write_json(out / "tracks.json", result)
    print(f"-> {files.mot_path}, {out / 'tracks.json'}"
          + (f", {result['video']}" if "video" in result else ""))
    return 0 if records or not errors else 1
