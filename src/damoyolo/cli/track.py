"""damoyolo track: detect and track objects over a video, camera, image folder or glob."""

from __future__ import annotations

import argparse

from ._detector import add_detector_arguments, open_detector, output_folder, source_inputs

HELP = "track objects over a video file, camera, image folder or glob (ByteTrack-style)"

# flag -> ByteTrackConfig field (the named flags; --set reaches every field)
_FLAGS = {"track_high": "high_thresh", "track_low": "low_thresh",
          "new_track": "new_track_thresh", "match_iou": "match_iou",
          "min_hits": "min_hits"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True,
                   help="checkpoint (.pth/.pt), ONNX (.onnx), OpenVINO (.xml) or TensorRT "
                        "(.engine)")
    p.add_argument("--source", required=True,
                   help="video file, camera index (0), image directory, quoted glob, or "
                        "'demo': a synthetic video of moving shapes with ground truth, "
                        "written to OUT/demo.mp4 and evaluated")
    p.add_argument("--tracker", default="bytetrack", choices=["bytetrack", "iou"],
                   help="bytetrack (default) or iou (the greedy IoU-only baseline)")
    add_detector_arguments(p, out="runs/track", batch=1, per="frame",
                           conf_help="detector score threshold (default: the tracker's lowest "
                                     "score used, low_thresh 0.1)")
    g = p.add_argument_group("tracker (docs/tracking.md)")
    g.add_argument("--track-high", type=float, default=None,
                   help="first-association score threshold (high_thresh, default 0.5)")
    g.add_argument("--track-low", type=float, default=None,
                   help="lowest score used, second association (low_thresh, default 0.1)")
    g.add_argument("--new-track", type=float, default=None,
                   help="lowest score that starts a track (new_track_thresh, default 0.6)")
    g.add_argument("--match-iou", type=float, default=None,
                   help="first-association minimum IoU x score (match_iou, default 0.2)")
    g.add_argument("--min-hits", type=int, default=None,
                   help="matched frames that confirm a track (default 2)")
    g.add_argument("--track-buffer", type=int, default=30,
                   help="frames a lost track is kept, at 30 fps (scaled by the video's fps; "
                        "default 30)")
    g.add_argument("--per-class", action="store_true", help="associate within a class only")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any tracker setting, e.g. --set fuse_score=False (repeatable)")
    o = p.add_argument_group("outputs")
    o.add_argument("--trails", type=int, default=0,
                   help="draw each track's last N centres (default 0: no trails)")
    o.add_argument("--no-save-video", action="store_true",
                   help="no annotated video (image sources: no annotated frames)")
    o.add_argument("--save-frames", action="store_true",
                   help="also write every annotated video frame as a JPEG in OUT/frames")
    o.add_argument("--gt", default=None,
                   help="MOTChallenge ground-truth txt: evaluate MOTA/IDF1 (needs motmetrics)")
    o.add_argument("--max-frames", type=int, default=None,
                   help="stop a video/camera after this many frames")
    o.add_argument("--no-progress", action="store_true", help="no progress line")
    d = p.add_argument_group("--source demo")
    d.add_argument("--demo-frames", type=int, default=150, help="frames (default 150)")
    d.add_argument("--demo-seed", type=int, default=0)
    d.add_argument("--demo-objects", type=int, default=8, help="moving objects (default 8)")
    d.add_argument("--demo-size", type=int, default=320, help="frame width (default 320)")


def _settings(args, fps: float | None) -> dict:
    import ast

    from . import CLIError
    s = {field: getattr(args, flag) for flag, field in _FLAGS.items()
         if getattr(args, flag) is not None}
    if args.tracker == "bytetrack":
        scale = (fps or 30.0) / 30.0
        s["max_lost"] = max(0, int(round(args.track_buffer * scale)))
        if args.per_class:
            s["per_class"] = True
    else:
        s = {k: v for k, v in s.items() if k in ("high_thresh", "match_iou", "min_hits")}
        if args.per_class:
            s["per_class"] = True
    for item in args.overrides:
        key, sep, val = item.partition("=")
        if not sep:
            raise CLIError(f"--set {item!r}: expected KEY=VALUE")
        try:
            s[key.strip()] = ast.literal_eval(val.strip())
        except (ValueError, SyntaxError):
            raise CLIError(f"--set {item!r}: {val!r} is not a Python literal") from None
    return s


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    import cv2
    import numpy as np

    from ..infer.sources import Progress, open_source
    from ..track.api import track_frames
    from ..track.bytetrack import TRACKERS, _replace
    from ..track.draw import TrackDrawer
    from ..outputs import OutputError, atomic_output, temporary_path
    from ..track.io import MOTWriter, read_mot_txt, write_json
    from . import CLIError, parse_imgsz

    parse_imgsz(args.imgsz)  # the options, before any work
    if args.batch < 1:
        raise CLIError("--batch must be >= 1")
    _, cfg_cls = TRACKERS[args.tracker]
    _replace(cfg_cls(), _settings(args, None))  # names and values, before any work
    gt_path = Path(args.gt) if args.gt else None
    gt = read_mot_txt(gt_path) if gt_path else None
    if gt is not None or args.source == "demo":  # fail before the work when it cannot run
        from .._optional import import_optional
        import_optional("motmetrics", "MOT evaluation (--gt, --source demo)")
    source_spec = args.source
    min_visibility = None
    source = None
    if args.source != "demo":  # everything that can fail is opened before the output folder
        source = open_source(source_spec, args.max_frames)
    low = _settings(args, None).get("low_thresh", getattr(cfg_cls, "low_thresh",
                                                          getattr(cfg_cls, "high_thresh")))
    det = open_detector(args, args.conf if args.conf is not None else float(low))
    inputs = [args.weights, args.gt] + ([] if source is None
                                        else source_inputs(source, args.source))
    out = output_folder(args, inputs)
    if args.source == "demo":
        from ..track.video import MIN_VISIBILITY, write_synth_video
        min_visibility = MIN_VISIBILITY
        info = write_synth_video(out / "demo.mp4", frames=args.demo_frames, seed=args.demo_seed,
                                 size=args.demo_size, objects=args.demo_objects)
        print(f"synthetic video: {info['frames']} frames, {info['objects']} objects, "
              f"{info['width']}x{info['height']} -> {info['video']} (ground truth {info['gt']})")
        source_spec = info["video"]
        source = open_source(source_spec, args.max_frames)
        if gt_path is None:
            gt_path = Path(info["gt"])
            gt = read_mot_txt(gt_path)
    fps = float(getattr(source, "fps", 0) or 0) or None
    settings = _settings(args, fps)

    is_video = source.kind == "video"
    src_path = Path(str(source_spec))
    stem = source.stem if is_video else (src_path.name if src_path.is_dir() else "tracks")
    drawer = TrackDrawer(args.trails)
    frames_dir = out / "frames"
    if args.save_frames or (not is_video and not args.no_save_video):
        frames_dir.mkdir(exist_ok=True)
    progress = Progress(len(source) or None, "track", enabled=not args.no_progress)
    records, errors, det_ms, trk_ms = [], [], [], []
    ids: set[int] = set()
    writer = None
    mot_path = out / f"{stem}.txt"
    mot = MOTWriter(mot_path)
    try:
        for r in track_frames(det, source, tracker=args.tracker, batch_size=args.batch,
                              **settings):
            progress.update()
            if r.tracks is None:
                errors.append({"frame": r.frame, "name": r.name, "error": r.error})
                print(f"\nskipped {r.error}", file=sys.stderr)
                continue
            mot.write(r.frame, r.tracks)
            ids.update(r.tracks.ids.tolist())
            det_ms.append(r.det_ms)
            trk_ms.append(r.track_ms)
            rec = {"frame": r.frame, "name": r.name, "det_ms": round(r.det_ms, 3),
                   "track_ms": round(r.track_ms, 4), "tracks": r.tracks.to_list()}
            draw = (not args.no_save_video) or args.save_frames
            if draw:
                drawn = drawer(r.image, r.tracks)[:, :, ::-1]
                if is_video and not args.no_save_video:
                    if writer is None:
                        h, w = drawn.shape[:2]
                        video_tmp = temporary_path(out / f"{stem}_tracked.mp4")
                        vw = cv2.VideoWriter(str(video_tmp), cv2.VideoWriter_fourcc(*"mp4v"),
                                             float(fps or 25.0), (w, h))
                        if not vw.isOpened():  # not kept: nothing to rename in the end
                            video_tmp.unlink(missing_ok=True)
                            raise OutputError(f"{out / f'{stem}_tracked.mp4'}: this OpenCV cannot "
                                              f"write mp4v video (use --no-save-video)")
                        writer = vw
                    writer.write(np.ascontiguousarray(drawn))
                if args.save_frames or not is_video:
                    name = (f"{r.frame:06d}.jpg" if is_video else
                            f"{r.frame:06d}_{Path(r.name).stem}.jpg")
                    with atomic_output(frames_dir / name) as tmp:
                        if not cv2.imwrite(str(tmp), drawn):
                            raise OutputError(f"{frames_dir / name}: could not be written")
            records.append(rec)
    except KeyboardInterrupt:
        print("\ninterrupted: writing what was processed", file=sys.stderr)
    finally:
        progress.close()
        mot.close()
        if writer is not None:
            writer.release()
            video_tmp.replace(out / f"{stem}_tracked.mp4")
    timing = {"det_ms_mean": float(np.mean(det_ms)) if det_ms else 0.0,
              "track_ms_mean": float(np.mean(trk_ms)) if trk_ms else 0.0,
              "track_ms_max": float(np.max(trk_ms)) if trk_ms else 0.0}
    result = {"weights": str(args.weights), "backend": det.backend.name,
              "source": str(args.source), "tracker": args.tracker, "settings": settings,
              "class_names": det.class_names, "conf": det.conf, "iou": det.iou,
              "input_size": list(det.input_size), "timing": timing, "mot_txt": str(mot_path),
              "frames": records, "errors": errors}
    if writer is not None:
        result["video"] = str(out / f"{stem}_tracked.mp4")
    print(f"{len(records)} frames, {len(ids)} tracks, {len(errors)} unreadable; per frame: "
          f"detection {timing['det_ms_mean']:.1f} ms, tracking {timing['track_ms_mean']:.3f} ms")
    if gt is not None:
        from ..track.metrics import evaluate_mot
        m = evaluate_mot(gt, read_mot_txt(mot_path), min_visibility=min_visibility)
        result["metrics"] = m
        print(f"MOTA {m['mota']:.3f}  IDF1 {m['idf1']:.3f}  ID switches "
              f"{m['num_switches']:.0f}  FP {m['num_false_positives']:.0f}  FN "
              f"{m['num_misses']:.0f}  (ground truth {gt_path}, IoU 0.5)")
    write_json(out / "tracks.json", result)
    print(f"-> {mot_path}, {out / 'tracks.json'}"
          + (f", {result['video']}" if "video" in result else ""))
    return 0 if records or not errors else 1
