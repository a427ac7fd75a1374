"""``damoyolo val``: COCO mAP of a checkpoint or an exported model on a dataset split.

Exported models (``.onnx``, OpenVINO ``.xml``, TensorRT ``.engine``) are evaluated through
:class:`damoyolo.Detector`: class names, category ids, input size and preprocessing come from
the metadata embedded at export time, raw and end-to-end exports alike.
"""

from __future__ import annotations

from pathlib import Path

HELP = "evaluate a checkpoint or exported model: COCO mAP, per-class AP, results json, timing"

EXPORT_SUFFIXES = (".onnx", ".xml", ".engine", ".plan")


def add_arguments(p) -> None:
    p.add_argument("--weights", required=True,
                   help="checkpoint (ours, or official with --model) or an exported model "
                        "(.onnx, OpenVINO .xml, TensorRT .engine)")
    p.add_argument("--data", required=True, help="dataset path (COCO json, YOLO or VOC folder)")
    p.add_argument("--split", default="val", help="split to evaluate (default val)")
    p.add_argument("--model", help="preset name (required for official checkpoints)")
    p.add_argument("--backend", default=None,
                   choices=["torch", "onnxruntime", "openvino", "tensorrt"],
                   help="runtime (default: from the weights suffix)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--imgsz", type=int, nargs="+", default=None, metavar="H [W]",
                   help="input size (default: the model's; exports have a fixed size)")
    p.add_argument("--device", default="", help="cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="CPU threads of an export backend")
    p.add_argument("--conf", type=float, help="score threshold (default: the preset's)")
    p.add_argument("--iou", type=float, help="NMS IoU threshold (default: the preset's)")
    p.add_argument("--max-det", type=int, default=None,
                   help="detections kept per image (default: the preset's; an end-to-end "
                        "export keeps at most its own max_det)")
    p.add_argument("--save-json", help="write COCO-format results to this file")


def _is_default_names(names: list[str]) -> bool:
    return list(names) == [str(i) for i in range(len(names))]


def check_classes(model_names: list[str], data_names: list[str], weights, data) -> None:
    """Error unless the model's classes are the dataset's (same count; same names, in order,
    unless one side has only placeholder names ``"0", "1", ...``)."""
    from . import CLIError
    if len(model_names) != len(data_names):
        raise CLIError(f"{weights}: model has {len(model_names)} classes, dataset {data} has "
                       f"{len(data_names)}; evaluate on the dataset the model was trained for")
    if _is_default_names(model_names) or _is_default_names(data_names):
        return
    diff = [(i, m, d) for i, (m, d) in enumerate(zip(model_names, data_names))
            if m.strip() != d.strip()]
    if diff:
        shown = ", ".join(f"{i}: model {m!r} vs dataset {d!r}" for i, m, d in diff[:5])
        more = f" (and {len(diff) - 5} more)" if len(diff) > 5 else ""
        raise CLIError(f"{weights}: class names differ from dataset {data}: {shown}{more}")


def _preset_max_det(preset: str | None) -> int:
    """The max_det a torch evaluation of ``preset`` uses (the head default if unknown)."""
    from ..config import HeadConfig
    from ..presets import get_preset
    try:
        return int(get_preset(preset).model.head.max_det)
    except (KeyError, ValueError, TypeError, AttributeError):
        return int(HeadConfig().max_det)


def _open_model(args, device: str):
    """(model or Detector, class names, category ids or None, input (H, W), is_export)."""
    from . import CLIError
    from ..export.onnx import ExportError
    from ..infer.backends import BackendError, backend_for_path

    backend = args.backend
    if backend is None:
        suffix = Path(args.weights).suffix.lower()
        backend = backend_for_path(args.weights) if suffix in EXPORT_SUFFIXES else "torch"
    if backend == "torch":
        from ..checkpoint import load_model
        model = load_model(args.weights, model=args.model, device=device)
        size = args.imgsz or tuple(model.input_size)
        names = model.class_names or [str(i) for i in range(model.num_classes)]
        return model, names, model.category_ids, size, False
    from ..infer.detector import Detector
    if args.model:
        print(f"note: --model is ignored for exported models ({args.weights} carries its "
              "preset in its metadata)")
    try:
        det = Detector(args.weights, backend=backend, device=device, conf=args.conf,
                       iou=args.iou, threads=args.threads, batch_size=args.batch,
                       imgsz=args.imgsz)
    except (BackendError, ExportError) as e:
        raise CLIError(str(e)) from None
    meta = det.backend.meta
    det.max_det = args.max_det or _preset_max_det(meta.get("preset"))
    if det.backend.mode == "end2end":
        det.max_det = min(det.max_det, int(meta.get("max_det", det.max_det)))
        if args.iou is not None and abs(args.iou - meta["end2end_iou_thresh"]) > 1e-9:
            print(f"note: end-to-end export: NMS IoU is fixed at "
                  f"{meta['end2end_iou_thresh']} in the graph; --iou is ignored")
        print(f"end-to-end export: in-graph NMS (conf > {meta['end2end_conf_thresh']}, "
              f"IoU {meta['end2end_iou_thresh']}, max_det {meta.get('max_det')})")
    return det, det.class_names, meta.get("category_ids"), tuple(det.input_size), True


def run(args) -> int:
    import torch

    from ..data import DetectionDataset, build_loader, load_dataset
    from ..eval import evaluate, format_report
    from . import parse_imgsz
    args.imgsz = parse_imgsz(args.imgsz)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, names, model_cat_ids, size, exported = _open_model(args, device)
    idx = load_dataset(args.data, split=args.split)
    check_classes(names, idx.class_names, args.weights, args.data)
    if exported:
        print(f"{args.weights}: {model.backend.name} backend, {model.backend.mode} outputs, "
              f"input {size[0]}x{size[1]}, {len(names)} classes")
    ds = DetectionDataset(idx, input_size=size, train=False, aug=None, seed=0)
    loader = build_loader(ds, batch_size=args.batch, workers=args.workers, shuffle=False, seed=0)
    # labels are aligned with the dataset's classes by index (checked above): score them
    # with the dataset's own category ids
    cat_ids = idx.category_ids
    if model_cat_ids and list(model_cat_ids) != list(cat_ids):
        print(f"note: {args.weights} was trained with category ids {list(model_cat_ids)[:8]}..., "
              f"the dataset uses {list(cat_ids)[:8]}...; matching classes by index and name")
    if exported:
        res = evaluate(model, loader, idx.to_coco_dict(), cat_ids, results_path=args.save_json,
                       progress=True)
    else:
        res = evaluate(model, loader, idx.to_coco_dict(), cat_ids, conf_thresh=args.conf,
                       iou_thresh=args.iou, max_det=args.max_det, device=device,
                       results_path=args.save_json, progress=True)
    print(format_report(res))
    return 0
