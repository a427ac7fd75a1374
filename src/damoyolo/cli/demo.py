"""damoyolo demo: build a model, save/load a checkpoint, predict on a generated image."""

from __future__ import annotations

import argparse

HELP = "end-to-end smoke demo on an embedded generated image (no download)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="damoyolo-ns", help="preset (default damoyolo-ns)")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--seed", type=int, default=0)


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


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import cv2
    import torch

    from ..checkpoint import build_model, load_model, save_model
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
    cv2.imwrite(str(out / "prediction.jpg"), drawn[:, :, ::-1])
    (out / "prediction.json").write_text(json.dumps(det.to_list(), indent=1))
    print(f"{model.cfg.name}: checkpoint {ckpt}, {len(det)} boxes (random weights: top-10 "
          f"shown) -> {out / 'prediction.jpg'}")
    return 0
