"""``damoyolo train``: train a preset on a dataset with the release's recipe."""

from __future__ import annotations

HELP = "train a model on a COCO / YOLO / VOC dataset (DDP when launched with torchrun)"


def add_arguments(p, teacher_required: bool = False) -> None:
    p.add_argument("--model", default="damoyolo-t", help="preset name (default damoyolo-t)")
    p.add_argument("--data", required=True, help="dataset path (COCO json, YOLO or VOC folder)")
    p.add_argument("--epochs", type=int, help="total epochs (default: the preset's recipe)")
    p.add_argument("--batch", type=int, help="images per iteration over all processes "
                   "(default 16)")
    p.add_argument("--recipe", choices=("auto", "release"), default="auto",
                   help="auto (default): warm-up, no-aug tail, EMA and accumulation sized "
                   "for this run; release: the release's values (300-epoch COCO schedule, "
                   "batch 256 by accumulation)")
    p.add_argument("--imgsz", type=int, help="square input size (multiple of 32)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--workers", type=int, help="data-loading worker processes")
    p.add_argument("--weights", help="fine-tune from this checkpoint (ours or official)")
    p.add_argument("--resume", help="continue a run from its last.pt")
    p.add_argument("--output", help="run folder (default runs/train; one that holds results "
                   "is not reused: the run goes to runs/train2, ...)")
    p.add_argument("--exist-ok", action="store_true",
                   help="write into --output even when it already holds files")
    p.add_argument("--teacher", required=teacher_required, help="distil from this teacher: checkpoint (ours or official) "
                   "or preset name; see docs/distillation.md")
    p.add_argument("--teacher-model", help="architecture of an official teacher checkpoint "
                   "(preset name, e.g. damoyolo-s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. train.eval_interval=5 (repeatable)")


def run(args) -> int:
    from ..workflows.train import train
    from ..engine.trainer import TrainingDiverged
    from . import CLIError
    if args.imgsz is not None and args.imgsz % 32:
        raise CLIError(f"--imgsz {args.imgsz} must be a multiple of 32")
    try:
        rec = train(model=args.model, data=args.data, epochs=args.epochs, batch=args.batch,
                    imgsz=args.imgsz, device=args.device, workers=args.workers,
                    overrides=args.overrides, weights=args.weights, resume=args.resume,
                    output=args.output, teacher=args.teacher,
                    teacher_model=args.teacher_model, recipe=args.recipe,
                    exist_ok=args.exist_ok)
    except TrainingDiverged as e:
        import sys
        print(f"damoyolo train: stopped: {e}", file=sys.stderr)
        return 3
    if "val_AP" in rec:
        print(f"final: mAP@[.5:.95] {rec['val_AP']:.4f}  AP50 {rec['val_AP50']:.4f}")
    return 0
