"""damoyolo track: detect and track objects over a video, camera, image folder or glob."""

from __future__ import annotations

import argparse

from ._detector import add_detector_arguments, detector_options

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


def run(args: argparse.Namespace) -> int:
    from ..workflows.track import TrackOptions, run_tracking
    from . import CLIError

    detector = detector_options(args)  # --imgsz, before any work
    if args.batch < 1:
        raise CLIError("--batch must be >= 1")
    named = {field: getattr(args, flag) for flag, field in _FLAGS.items()
             if getattr(args, flag) is not None}
    return run_tracking(TrackOptions(
        weights=args.weights, source=args.source, out=args.out, exist_ok=args.exist_ok,
        detector=detector, conf=args.conf, tracker=args.tracker, settings=named,
        track_buffer=args.track_buffer, per_class=args.per_class,
        overrides=tuple(args.overrides), trails=args.trails, save_video=not args.no_save_video,
        save_frames=args.save_frames, gt=args.gt, max_frames=args.max_frames,
        progress=not args.no_progress, demo_frames=args.demo_frames, demo_seed=args.demo_seed,
        demo_objects=args.demo_objects, demo_size=args.demo_size))
