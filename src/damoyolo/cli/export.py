"""damoyolo export: checkpoint -> ONNX / OpenVINO IR / TensorRT engine (re-parameterised)."""

from __future__ import annotations

import argparse

HELP = "export a checkpoint to ONNX (raw or end-to-end NMS), OpenVINO or TensorRT"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="damoyolo or official checkpoint (.pth)")
    p.add_argument("--model", default=None, help="preset name (needed for official .pth files)")
    p.add_argument("--format", default="onnx", choices=["onnx", "openvino", "tensorrt"])
    p.add_argument("--out", default=None,
                   help="output file (default: weights name with .onnx / .xml / .engine)")
    p.add_argument("--imgsz", type=int, nargs="+", default=None,
                   help="input S or H W, multiples of 32 (default: the preset's)")
    p.add_argument("--batch", type=int, default=1, help="static batch size (default 1)")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch dimension")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--end2end", action="store_true",
                   help="NMS inside the graph: num_dets, det_boxes, det_scores, det_labels")
    g.add_argument("--raw-heads", action="store_true",
                   help="official benchmark-mode per-level outputs (no decoding)")
    p.add_argument("--max-det", type=int, default=100, help="end-to-end: boxes per image")
    p.add_argument("--conf", type=float, default=None, help="end-to-end score threshold")
    p.add_argument("--iou", type=float, default=None, help="end-to-end NMS IoU threshold")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 13, default 17)")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim")
    p.add_argument("--half", action="store_true", help="fp16 (OpenVINO weights, TensorRT)")
    p.add_argument("--int8", action="store_true", help="TensorRT int8 (needs --calib)")
    p.add_argument("--calib", default=None, help="folder of calibration images for --int8")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..checkpoint import load_model
    from ..export import ExportError, export_onnx, export_openvino, export_tensorrt
    from . import CLIError, parse_imgsz

    imgsz = parse_imgsz(args.imgsz)
    if args.int8 and args.format != "tensorrt":
        raise CLIError("--int8 is available for --format tensorrt only")
    if args.half and args.format == "onnx":
        raise CLIError("--half: fp16 ONNX is not offered (slow on CPU runtimes); use "
                       "--format openvino --half or --format tensorrt --half")
    mode = "end2end" if args.end2end else ("raw_heads" if args.raw_heads else "raw")
    kw = dict(imgsz=imgsz, mode=mode, dynamic=args.dynamic, batch=args.batch, opset=args.opset,
              simplify=not args.no_simplify, max_det=args.max_det, conf_thresh=args.conf,
              iou_thresh=args.iou)
    suffix = {"onnx": ".onnx", "openvino": ".xml", "tensorrt": ".engine"}[args.format]
    out = Path(args.out) if args.out else Path(args.weights).with_suffix(suffix)
    model = load_model(args.weights, model=args.model)
    try:
        if args.format == "onnx":
            path = export_onnx(model, out, **kw)
        elif args.format == "openvino":
            path = export_openvino(model, out, half=args.half, **kw)
        else:
            path = export_tensorrt(model, out, half=args.half, int8=args.int8,
                                   calib=args.calib, **kw)
    except ExportError as e:
        raise CLIError(str(e)) from None
    print(f"exported {model.cfg.name} ({mode}, {args.format}) -> {path}")
    return 0
