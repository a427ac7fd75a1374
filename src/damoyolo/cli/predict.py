"""damoyolo predict: detect objects in images, folders, globs, videos or a camera."""

from __future__ import annotations

import argparse

HELP = "predict on an image, directory, glob, video file or camera index"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True,
                   help="checkpoint (.pth), ONNX (.onnx), OpenVINO (.xml) or TensorRT (.engine)")
    p.add_argument("--source", required=True,
                   help="image file, directory, quoted glob ('imgs/*.jpg'), video file, or "
                        "camera index (0)")
    p.add_argument("--model", default=None, help="preset name (needed for official .pth files)")
    p.add_argument("--backend", default=None,
                   choices=["torch", "onnxruntime", "openvino", "tensorrt"],
                   help="default: chosen from the weights suffix")
    p.add_argument("--out", default="runs/predict", help="output folder (default runs/predict)")
    p.add_argument("--conf", type=float, default=None, help="score threshold (default: preset)")
    p.add_argument("--iou", type=float, default=None, help="NMS IoU threshold (default: preset)")
    p.add_argument("--max-det", type=int, default=300, help="detections kept per image")
    p.add_argument("--imgsz", type=int, nargs="+", default=None,
                   help="network input: S or H W, multiples of 32 (torch backend)")
    p.add_argument("--classes", type=int, nargs="+", default=None,
                   help="keep only these class indices")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--half", action="store_true", help="fp16 inference (CUDA torch backend)")
    p.add_argument("--batch", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the backend")
    p.add_argument("--save-txt", action="store_true",
                   help="also write YOLO txt labels (class xc yc w h conf, normalised)")
    p.add_argument("--no-save-img", action="store_true", help="do not write annotated images")
    p.add_argument("--max-frames", type=int, default=None,
                   help="stop a video/camera after this many frames")
    p.add_argument("--no-progress", action="store_true", help="no progress line")


def _yolo_lines(det, hw: tuple[int, int]) -> list[str]:
    h, w = hw
    lines = []
    for (x1, y1, x2, y2), s, lab in zip(det.boxes.tolist(), det.scores.tolist(),
                                        det.labels.tolist()):
        lines.append(f"{int(lab)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} "
                     f"{(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f} {s:.5f}")
    return lines


def _unique_name(stem: str, used: set[str]) -> str:
    name, i = stem, 1
    while name in used:
        name, i = f"{stem}_{i}", i + 1
    used.add(name)
    return name


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    import cv2

    from ..infer.backends import BackendError
    from ..infer.detector import Detector
    from ..infer.sources import Progress, open_source
    from ..viz import draw_detections
    from . import CLIError, parse_imgsz

    imgsz = parse_imgsz(args.imgsz)
    if args.batch < 1:
        raise CLIError("--batch must be >= 1")
    source = open_source(args.source, args.max_frames)
    try:
        det = Detector(args.weights, backend=args.backend, device=args.device, conf=args.conf,
                       iou=args.iou, max_det=args.max_det, classes=args.classes,
                       half=args.half, imgsz=imgsz, model=args.model, threads=args.threads,
                       batch_size=args.batch)
    except BackendError as e:
        raise CLIError(str(e)) from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.save_txt:
        (out / "labels").mkdir(exist_ok=True)
    progress = Progress(len(source) or None, "predict", enabled=not args.no_progress)
    records, errors, used = [], [], set()
    n_boxes = 0
    writer = None

    def flush(frames):
        nonlocal n_boxes, writer
        if not frames:
            return
        dets = det.predict_arrays([f.image for f in frames])
        for f, d in zip(frames, dets):
            n_boxes += len(d)
            hw = f.image.shape[:2]
            if source.kind == "images":
                stem = _unique_name(Path(f.name).stem, used)
                rec = {"image": f.name, "height": hw[0], "width": hw[1],
                       "detections": d.to_list()}
                if not args.no_save_img:
                    drawn = draw_detections(f.image, d)
                    cv2.imwrite(str(out / f"{stem}.jpg"), drawn[:, :, ::-1])
                    rec["annotated"] = str(out / f"{stem}.jpg")
            else:
                stem = f"{source.stem}_{f.index:06d}"
                rec = {"frame": f.index, "height": hw[0], "width": hw[1],
                       "detections": d.to_list()}
                if not args.no_save_img:
                    if writer is None:
                        path = out / f"{source.stem}.mp4"
                        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"),
                                                 float(source.fps), (hw[1], hw[0]))
                    writer.write(draw_detections(f.image, d)[:, :, ::-1])
            if args.save_txt:
                (out / "labels" / f"{stem}.txt").write_text(
                    "".join(ln + "\n" for ln in _yolo_lines(d, hw)))
            records.append(rec)
            progress.update()

    pending = []
    try:
        for frame in source:
            if frame.image is None:
                errors.append({"image": frame.name, "error": frame.error})
                print(f"\nskipped {frame.error}", file=sys.stderr)
                progress.update()
                continue
            pending.append(frame)
            if len(pending) >= det.batch_size:
                flush(pending)
                pending = []
        flush(pending)
    except KeyboardInterrupt:
        print("\ninterrupted: writing what was processed", file=sys.stderr)
    finally:
        progress.close()
        if writer is not None:
            writer.release()
    result = {"weights": str(args.weights), "backend": det.backend.name,
              "source": str(args.source), "class_names": det.class_names,
              "conf": det.conf, "iou": det.iou, "input_size": list(det.input_size),
              "results": records, "errors": errors}
    (out / "predictions.json").write_text(json.dumps(result, indent=1))
    what = "frames" if source.kind == "video" else "images"
    print(f"{len(records)} {what}, {n_boxes} detections, {len(errors)} unreadable -> "
          f"{out / 'predictions.json'}")
    return 0 if records or not errors else 1
