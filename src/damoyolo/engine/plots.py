"""PNG plots of a training run: loss curves, learning rate, mAP over epochs, per-class PR.

Written by the trainer at the end of a run (``results.png``, ``pr_curves.png`` in the run
folder) when matplotlib is installed (``pip install 'damoyolo[train]'``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["plot_history", "pr_curves", "plot_pr_curves"]

_LOSSES = ("loss", "loss_qfl", "loss_giou", "loss_dfl", "loss_distill")
_METRICS = ("val_AP", "val_AP50", "val_AP75")


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _save(plt, fig, path: str | Path) -> Path:
    """``fig`` -> ``path`` through a unique temporary renamed over it (a kill leaves the
    previous plot or none, never half of one); the figure is closed either way."""
    from ..outputs import atomic_output
    path = Path(path)
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format=path.suffix[1:].lower() or "png")
    finally:
        plt.close(fig)
    return path


def plot_history(history: list[dict], path: str | Path) -> Path:
    """Loss components, learning rate and validation mAP per epoch -> ``path`` (PNG)."""
    plt = _pyplot()
    epochs = [int(r["epoch"]) for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), dpi=100)
    for k in _LOSSES:
        if any(k in r for r in history):
            axes[0].plot(epochs, [r.get(k, math.nan) for r in history], marker=".", label=k)
    axes[0].set(title="training loss (epoch mean)", xlabel="epoch")
    axes[0].legend(fontsize=8)
    axes[1].plot(epochs, [r.get("lr", math.nan) for r in history], marker=".")
    axes[1].set(title="learning rate (end of epoch)", xlabel="epoch")
    for k in _METRICS:
        pts = [(int(r["epoch"]), float(r[k])) for r in history if k in r]
        if pts:
            axes[2].plot(*zip(*pts), marker="o", label=k[4:])
    axes[2].set(title="validation (EMA model)", xlabel="epoch", ylim=(0, None))
    if axes[2].lines:
        axes[2].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(plt, fig, path)


def pr_curves(gt: dict, results: list[dict], iou: float = 0.5) -> dict[int, np.ndarray]:
    """Per category id: interpolated precision at the 101 COCO recall points (IoU ``iou``,
    all areas, 100 detections); -1 where the class has no ground truth."""
    from ..eval.coco import run_cocoeval
    cats = sorted(c["id"] for c in gt.get("categories", []))
    if not results or not gt.get("annotations"):
        return {c: np.full(101, -1.0) for c in cats}
    ev = run_cocoeval(gt, results)
    prec = np.asarray(ev.eval["precision"])  # (T, R, K, area, maxdet)
    t = int(np.argmin(np.abs(np.asarray(ev.params.iouThrs) - iou)))
    ids = list(ev.params.catIds)
    return {c: (prec[t, :, ids.index(c), 0, -1] if c in ids else np.full(101, -1.0))
            for c in cats}


def plot_pr_curves(gt: dict, results: list[dict], class_names: list[str], path: str | Path,
                   category_ids: list[int] | None = None, iou: float = 0.5) -> Path:
    """Precision-recall curve of every class at IoU ``iou`` -> ``path`` (PNG)."""
    plt = _pyplot()
    curves = pr_curves(gt, results, iou)
    ids = category_ids or sorted(curves)
    recall = np.linspace(0, 1, 101)
    fig, ax = plt.subplots(figsize=(7, 6), dpi=100)
    aps = []
    for name, cid in zip(class_names, ids):
        p = curves.get(cid)
        if p is None or (p < 0).all():
            continue
        p = np.where(p < 0, 0, p)
        aps.append(p.mean())
        ax.plot(recall, p, lw=1.2, label=f"{name} {p.mean():.3f}")
    mean = f" (mAP@{iou:g} {np.mean(aps):.3f})" if aps else ""
    ax.set(title=f"precision-recall per class, IoU {iou:g}{mean}", xlabel="recall",
           ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    if aps:
        ax.legend(fontsize=7, loc="best", ncol=2 if len(aps) > 12 else 1)
    fig.tight_layout()
    return _save(plt, fig, path)
