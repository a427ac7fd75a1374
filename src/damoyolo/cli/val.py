"""``damoyolo val``: COCO mAP of a checkpoint on a dataset's validation split."""

from __future__ import annotations

HELP = "evaluate a checkpoint: COCO mAP, per-class AP, results json, timing per image"


def add_arguments(p) -> None:
    p.add_argument("--weights", required=True, help="checkpoint (ours, or official with --model)")
    p.add_argument("--data", required=True, help="dataset path (COCO json, YOLO or VOC folder)")
    p.add_argument("--split", default="val", help="split to evaluate (default val)")
    p.add_argument("--model", help="preset name (required for official checkpoints)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--imgsz", type=int, help="square input size (default: the model's)")
    p.add_argument("--device", default="", help="cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--conf", type=float, help="score threshold (default: the preset's)")
    p.add_argument("--iou", type=float, help="NMS IoU threshold (default: the preset's)")
    p.add_argument("--save-json", help="write COCO-format results to this file")


def run(args) -> int:
    import torch

    from ..checkpoint import load_model
    from ..data import DetectionDataset, build_loader, load_dataset
    from ..eval import evaluate, format_report
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(args.weights, model=args.model, device=device)
    idx = load_dataset(args.data, split=args.split)
    if model.num_classes != len(idx.class_names):
        raise ValueError(f"{args.weights}: model has {model.num_classes} classes, dataset "
                         f"{args.data} has {len(idx.class_names)}")
    size = (args.imgsz, args.imgsz) if args.imgsz else tuple(model.input_size)
    ds = DetectionDataset(idx, input_size=size, train=False, aug=None, seed=0)
    loader = build_loader(ds, batch_size=args.batch, workers=args.workers, shuffle=False, seed=0)
    cat_ids = model.category_ids or idx.category_ids
    res = evaluate(model, loader, idx.to_coco_dict(), cat_ids, conf_thresh=args.conf,
                   iou_thresh=args.iou, device=device, results_path=args.save_json,
                   progress=True)
    print(format_report(res))
    return 0
