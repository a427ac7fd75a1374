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
    p.add_argument("--int8", action="store_true",
                   help="INT8: onnx (onnxruntime QDQ) / openvino (NNCF) need --data; "
                        "tensorrt needs --calib")
    p.add_argument("--calib", default=None, help="TensorRT --int8: folder of calibration images")
    p.add_argument("--data", default=None,
                   help="onnx/openvino --int8: calibration dataset (COCO json, YOLO or VOC)")
    p.add_argument("--split", default="train", help="calibration split (default train)")
    p.add_argument("--calib-images", type=int, default=300,
                   help="calibration images, a seeded random subset (default 300)")
    p.add_argument("--max-drop", type=float, default=None, metavar="D",
                   help="partial INT8: keep the most sensitive blocks float until the held-out "
                        "AP@[.5:.95] drop is <= D points; writes <out>_sensitivity.json/.png")
    p.add_argument("--holdout-images", type=int, default=200,
                   help="--max-drop: held-out images of the split (default 200)")
    p.add_argument("--int8-activations", default="s8", choices=["s8", "u8"],
                   help="onnx --int8: activation type, s8 (S8S8, default) or u8 (U8S8)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..checkpoint import load_model
    from ..export import export_onnx, export_openvino, export_tensorrt
    from . import CLIError, parse_imgsz

    imgsz = parse_imgsz(args.imgsz)
    int8_cpu = args.int8 and args.format in ("onnx", "openvino")
    if int8_cpu and not args.data:
        raise CLIError(f"--int8 --format {args.format} needs --data DATASET (calibration images)")
    if (args.max_drop is not None or args.data) and not int8_cpu:
        raise CLIError("--data and --max-drop apply to --int8 with --format onnx or openvino")
    if args.half and args.int8:
        raise CLIError("--half and --int8 exclude each other")
    if args.half and args.format == "onnx":
        raise CLIError("--half: fp16 ONNX is not offered (slow on CPU runtimes); use "
                       "--format openvino --half or --format tensorrt --half")
    mode = "end2end" if args.end2end else ("raw_heads" if args.raw_heads else "raw")
    kw = dict(imgsz=imgsz, mode=mode, dynamic=args.dynamic, batch=args.batch, opset=args.opset,
              simplify=not args.no_simplify, max_det=args.max_det, conf_thresh=args.conf,
              iou_thresh=args.iou)
    suffix = {"onnx": ".onnx", "openvino": ".xml", "tensorrt": ".engine"}[args.format]
    out = Path(args.out) if args.out else Path(args.weights).with_suffix(suffix)
    if int8_cpu and not args.out:
        out = out.with_name(f"{out.stem}_int8{suffix}")
    from ..outputs import refuse_overlap
    refuse_overlap(out, [args.weights], what="export")
    if args.format == "openvino":
        refuse_overlap(out.with_suffix(".bin"), [args.weights], what="export")
    model = load_model(args.weights, model=args.model)
    if int8_cpu:
        from ..workflows.int8 import export_int8
        res = export_int8(model, out, args.format, data=args.data, split=args.split,
                          calib_images=args.calib_images, max_drop=args.max_drop,
                          holdout_images=args.holdout_images,
                          onnx_activations=args.int8_activations, **kw)
        path = res.path
        if res.table_path:
            print(f"sensitivity table -> {res.table_path}" +
                  (f", chart -> {res.chart_path}" if res.chart_path else ""))
        mode = f"{mode}, int8"
    elif args.format == "onnx":
        path = export_onnx(model, out, **kw)
    elif args.format == "openvino":
        path = export_openvino(model, out, half=args.half, **kw)
    else:
        path = export_tensorrt(model, out, half=args.half, int8=args.int8,
                               calib=args.calib, **kw)
    print(f"exported {model.cfg.name} ({mode}, {args.format}) -> {path}")
    return 0
