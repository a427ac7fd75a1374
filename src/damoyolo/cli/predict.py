"""damoyolo predict: detect objects in images, folders, globs, videos or a camera."""

from __future__ import annotations

import argparse

from ._detector import add_detector_arguments, open_detector, output_folder

HELP = "predict on an image, directory, glob, video file or camera index"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True,
                   help="checkpoint (.pth), ONNX (.onnx), OpenVINO (.xml) or TensorRT (.engine)")
    p.add_argument("--source", required=True,
                   help="image file, directory, quoted glob ('imgs/*.jpg'), video file, or "
                        "camera index (0)")
    add_detector_arguments(p, out="runs/predict", batch=8, per="image",
                           conf_help="score threshold (default 0.25, for display; `damoyolo "
                                     "val` keeps the preset's evaluation threshold)")
    p.add_argument("--save-txt", action="store_true",
                   help="also write YOLO txt labels (class xc yc w h conf, normalised)")
    p.add_argument("--no-save-img", action="store_true", help="do not write annotated images")
    p.add_argument("--max-frames", type=int, default=None,
                   help="stop a video/camera after this many frames")
    p.add_argument("--no-progress", action="store_true", help="no progress line")


def run(args: argparse.Namespace) -> int:
    from ..infer.results import DISPLAY_CONF, PredictionWriter, predict_source
    from ..infer.sources import Progress, open_source
    from ..outputs import source_inputs

    source = open_source(args.source, args.max_frames)
    det = open_detector(args, DISPLAY_CONF if args.conf is None else args.conf)
    out = output_folder(args, [*source_inputs(source, args.source), args.weights])
    run_info = {"weights": str(args.weights), "backend": det.backend.name,
                "source": str(args.source), "class_names": det.class_names, "conf": det.conf,
                "iou": det.iou, "input_size": list(det.input_size)}
    writer = PredictionWriter(out, run_info, kind=source.kind,
                              stem=getattr(source, "stem", "video"),
                              fps=getattr(source, "fps", 25.0), save_img=not args.no_save_img,
                              save_txt=args.save_txt)
    progress = Progress(len(source) or None, "predict", enabled=not args.no_progress)
    summary = predict_source(det, source, writer, progress)
    what = "frames" if source.kind == "video" else "images"
    print(f"{summary[what]} {what}, {summary['detections']} detections, {summary['errors']} "
          f"unreadable -> {writer.path}")
    return 0 if summary[what] or not summary["errors"] else 1
