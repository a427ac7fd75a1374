"""damoyolo demo: the main job on the embedded default, start to finish.

Generates the synthetic dataset, trains a small preset for a few minutes on the CPU,
evaluates it (prints mAP) and predicts on a validation image, saving the drawn result.
``--smoke`` only builds a model, saves/loads a checkpoint and predicts on a generated image.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = ("synthetic data -> train a few minutes on CPU -> val (mAP) -> predict a val image "
        "(no download)")

# the demo's run: the plain `damoyolo train` command (auto recipe) on synthetic shapes
DEFAULTS = {"images": 400, "imgsz": 256, "min_size": 16, "epochs": 12, "batch": 8}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="damoyolo-ns", help="preset (default damoyolo-ns)")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--images", type=int, default=DEFAULTS["images"],
                   help="synthetic images (20%% val)")
    p.add_argument("--imgsz", type=int, default=DEFAULTS["imgsz"],
                   help="image size of the synthetic data, and training / inference input size")
    p.add_argument("--min-size", type=int, default=DEFAULTS["min_size"],
                   help="smallest object side in pixels of the synthetic images")
    p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"],
                   help="training epochs (a few minutes)")
    p.add_argument("--batch", type=int, default=DEFAULTS["batch"])
    p.add_argument("--conf", type=float, default=0.3, help="score threshold of the drawing")
    p.add_argument("--device", default="cpu")
    p.add_argument("--smoke", action="store_true",
                   help="no training: build, save/load and predict on a generated image")


def _scene(seed: int, size: int = 480) -> "np.ndarray":  # noqa: F821
    """A small generated RGB scene: textured background with a few filled shapes."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    img = (rng.normal(120, 25, (size, size, 3))).clip(0, 255).astype(np.uint8)
    img = cv2.GaussianBlur(img, (7, 7), 0)
    for _ in range(6):
        c = tuple(int(v) for v in rng.integers(0, 255, 3))
        x, y = (int(v) for v in rng.integers(20, size - 120, 2))
        s = int(rng.integers(30, 110))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + s, y + s), c, -1)
        else:
            cv2.circle(img, (x + s // 2, y + s // 2), s // 2, c, -1)
    return img


MARK = ".damoyolo-demo"  # the file that marks a folder as the demo's own


def claim_folder(out: Path) -> None:
    """Make ``out`` the demo's folder: a new or empty folder is marked as the demo's; a
    folder holding files that the demo did not write is refused (nothing there is touched)."""
    from ..outputs import OutputError, is_empty_dir
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is a file; name a folder with --out")
    ours = (out / MARK).exists() or (out / "data" / "demo_params.json").exists()  # or older
    if out.is_dir() and not ours and not is_empty_dir(out):
        raise OutputError(f"{out}: holds files that `damoyolo demo` did not write; the demo "
                          f"resets its own folder each time, so name a new or empty folder "
                          f"with --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARK).write_text("this folder is written and reset by `damoyolo demo`\n")


def run(args: argparse.Namespace) -> int:
    claim_folder(Path(args.out))
    if not args.smoke:
        return _full(args)
    import json

    import cv2
    import torch

    from ..checkpoint import load_model, save_model
    from ..models.factory import build_model
    from ..outputs import atomic_output, atomic_write_text
    from ..preprocess import preprocess_batch
    from ..postprocess import scale_boxes, Detections
    from ..viz import draw_detections

    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(args.model)
    ckpt = out / "model.pth"
    save_model(model, ckpt)
    model = load_model(ckpt).reparameterize()
    img = _scene(args.seed)
    cv2.imwrite(str(out / "input.jpg"), img[:, :, ::-1])
    batch, metas = preprocess_batch([img], model.input_size)
    with torch.no_grad():
        det = model.postprocess(model(batch), conf_thresh=0.0, max_det=10)[0]
    det = Detections(scale_boxes(det.boxes, metas[0].scale_xy, metas[0].orig_hw), det.scores,
                     det.labels, det.class_names)
    drawn = draw_detections(img, det)
    with atomic_output(out / "prediction.jpg") as tmp:
        cv2.imwrite(str(tmp), drawn[:, :, ::-1])
    atomic_write_text(out / "prediction.json", json.dumps(det.to_list(), indent=1))
    print(f"{model.cfg.name}: checkpoint {ckpt}, {len(det)} boxes (random weights: top-10 "
          f"shown) -> {out / 'prediction.jpg'}")
    return 0


def _full(args: argparse.Namespace) -> int:
    import json
    import time

    from . import main as cli

    out = Path(args.out)
    data = out / "data"
    t0 = time.time()

    def stage(title: str) -> None:
        print(f"\n== {title} ({time.time() - t0:.0f} s)", flush=True)

    stage(f"1/4 synthetic dataset: {args.images} images -> {data}")
    params = {"images": args.images, "seed": args.seed, "size": args.imgsz,
              "min_size": args.min_size}
    stamp = data / "demo_params.json"
    if ((data / "annotations" / "val.json").exists() and stamp.exists()
            and json.loads(stamp.read_text()) == params):
        print(f"{data} exists (same parameters): reused")
    else:
        if cli(["data", "synth", str(data), "--images", str(args.images), "--seed",
                str(args.seed), "--size", str(args.imgsz), "--min-size", str(args.min_size)]):
            return 1
        stamp.write_text(json.dumps(params))
    stage(f"2/4 train {args.model} at {args.imgsz} for {args.epochs} epochs on {args.device}")
    run = out / "train"
    if run.exists():  # a fresh run each time, in the demo's own folder (claim_folder)
        import shutil
        shutil.rmtree(run)
    sets = [f"train.eval_interval={args.epochs}", f"train.seed={args.seed}",
            "train.tensorboard=False"]
    if cli(["train", "--model", args.model, "--data", str(data), "--epochs", str(args.epochs),
            "--batch", str(args.batch), "--imgsz", str(args.imgsz), "--device", args.device,
            "--output", str(run)] + sum((["--set", s] for s in sets), [])):
        return 1
    weights = run / "last.pt"
    stage(f"3/4 val {weights}")
    if cli(["val", "--weights", str(weights), "--data", str(data), "--device", args.device,
            "--save-json", str(out / "val_results.json")]):
        return 1
    stage("4/4 predict on a validation image")
    from ..data import load_dataset
    image = Path(load_dataset(data, split="val").records[0].path)
    pred = out / "predict"
    if cli(["predict", "--weights", str(weights), "--source", str(image), "--out", str(pred),
            "--conf", str(args.conf), "--device", args.device, "--no-progress", "--exist-ok"]):
        return 1
    drawn = pred / f"{image.stem}.jpg"
    print(f"\ndone in {time.time() - t0:.0f} s: model {weights}, plots {run}/results.png, "
          f"drawn prediction {drawn}")
    return 0
