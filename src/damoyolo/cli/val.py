"""``damoyolo val``: COCO mAP of a checkpoint or an exported model on a dataset split.

Exported models (``.onnx``, OpenVINO ``.xml``, TensorRT ``.engine``) are evaluated through
:class:`damoyolo.Detector`: class names, category ids, input size and preprocessing come from
the metadata embedded at export time, raw and end-to-end exports alike
(:func:`damoyolo.workflows.evaluate.open_predictor`).  The thresholds are the low evaluation
ones of the preset (score 0.03 for the nano models, 0.05 for T-L), not ``predict``'s display
default.
"""

from __future__ import annotations

HELP = "evaluate a checkpoint or exported model: COCO mAP, per-class AP, results json, timing"


def add_arguments(p) -> None:
    p.add_argument("--weights", required=True,
                   help="checkpoint (ours, or official with --model) or an exported model "
                        "(.onnx, OpenVINO .xml, TensorRT .engine)")
    p.add_argument("--data", required=True, help="dataset path (COCO json, YOLO or VOC folder)")
    p.add_argument("--split", default="val", help="split to evaluate (default val)")
    p.add_argument("--model", help="preset name (required for official checkpoints)")
    from ..infer.backends import BACKENDS
    p.add_argument("--backend", default=None, choices=list(BACKENDS),
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
    from ._detector import add_trust_engine_argument
    add_trust_engine_argument(p)


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


def run(args) -> int:
    import torch

    from ..data import DetectionDataset, build_loader, load_dataset
    from ..eval import evaluate, format_report
    from ..workflows.evaluate import open_predictor
    from . import parse_imgsz
    args.imgsz = parse_imgsz(args.imgsz)
    if args.save_json:  # never over the weights or into the dataset it reads
        from ..outputs import refuse_overlap
        refuse_overlap(args.save_json, [args.weights, args.data], what="--save-json file")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pred = open_predictor(args.weights, backend=args.backend, model=args.model, device=device,
                          imgsz=args.imgsz, conf=args.conf, iou=args.iou, max_det=args.max_det,
                          threads=args.threads, batch=args.batch,
                          trust_engine=args.trust_engine)
    for note in pred.notes:
        print(note)
    idx = load_dataset(args.data, split=args.split)
    check_classes(pred.class_names, idx.class_names, args.weights, args.data)
    if pred.description:
        print(pred.description)
    ds = DetectionDataset(idx, input_size=pred.input_size, train=False, aug=None, seed=0)
    loader = build_loader(ds, batch_size=args.batch, workers=args.workers, shuffle=False, seed=0)
    # labels are aligned with the dataset's classes by index (checked above): score them
    # with the dataset's own category ids
    cat_ids = idx.category_ids
    model_cat_ids = pred.category_ids
    if model_cat_ids and list(model_cat_ids) != list(cat_ids):
        print(f"note: {args.weights} was trained with category ids {list(model_cat_ids)[:8]}..., "
              f"the dataset uses {list(cat_ids)[:8]}...; matching classes by index and name")
    res = evaluate(pred, loader, idx.to_coco_dict(), cat_ids, results_path=args.save_json,
                   progress=True)
    print(format_report(res))
    return 0
