"""COCO-style evaluation of a detector on a dataset.

Ground truth is a COCO dict (``images``/``annotations``/``categories`` with the dataset's
original category ids); predictions are mapped back to original-image pixels and to the
original category ids before scoring with ``faster-coco-eval``.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.results import detections_to_coco_results
from ..postprocess import scale_boxes
from .predictor import Predictor

__all__ = ["EvalResult", "coco_metrics", "evaluate", "format_report"]

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


@dataclass
class EvalResult:
    """metrics: AP (mAP@[.5:.95]), AP50, AP75, APs, APm, APl in [0, 1].
    per_class: class name -> AP@[.5:.95] (NaN where the class has no GT).
    timing_ms: mean milliseconds per image for ``preprocess`` (loading + resizing),
    ``inference`` and ``nms``.  results: COCO-format detections.  skipped: ids of the
    images that could not be read, left out of the scores (with a warning)."""

    metrics: dict[str, float]
    per_class: dict[str, float] = field(default_factory=dict)
    timing_ms: dict[str, float] = field(default_factory=dict)
    results: list[dict] = field(default_factory=list, repr=False)
    num_images: int = 0
    skipped: list[int] = field(default_factory=list)  # image ids left out: unreadable


def _import_coco():
    try:
        from faster_coco_eval import COCO, COCOeval_faster
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("COCO evaluation needs faster-coco-eval: pip install 'damoyolo[train]'"
                          ) from None
    return COCO, COCOeval_faster


def run_cocoeval(gt: dict, results: list[dict], summarize: bool = False):
    """Evaluated and accumulated bbox ``COCOeval`` of ``results`` against the COCO dict ``gt``
    (its printing silenced); ``ev.eval["precision"]`` is (T, R, K, area, maxdet)."""
    COCO, COCOeval = _import_coco()
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(json.loads(json.dumps(gt)))
        ev = COCOeval(coco_gt, coco_gt.loadRes(results), iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        if summarize:
            ev.summarize()
    return ev


def coco_metrics(gt: dict, results: list[dict], class_names: list[str] | None = None
                 ) -> tuple[dict[str, float], dict[str, float]]:
    """Score COCO-format ``results`` against the COCO dict ``gt``.

    Returns (metrics, per-class AP by name; names from ``class_names`` in category order or
    from ``gt['categories']``).
    """
    _import_coco()  # a clear error without faster-coco-eval, whatever the inputs
    cats = sorted(gt.get("categories", []), key=lambda c: c["id"])
    names = class_names if class_names and len(class_names) == len(cats) else \
        [c.get("name", str(c["id"])) for c in cats]
    if not results or not gt.get("annotations"):
        return {k: 0.0 for k in METRIC_NAMES}, {n: float("nan") for n in names}
    ev = run_cocoeval(gt, results, summarize=True)
    stats = [float(s) for s in ev.stats[:6]]
    metrics = {k: max(v, 0.0) for k, v in zip(METRIC_NAMES, stats)}
    prec = np.asarray(ev.eval["precision"])  # (T, R, K, area, maxdet)
    cat_ids = list(ev.params.catIds)
    per_class = {}
    for k, c in enumerate(cats):
        kk = cat_ids.index(c["id"]) if c["id"] in cat_ids else None
        p = prec[:, :, kk, 0, -1] if kk is not None else np.array([-1.0])
        p = p[p > -1]
        per_class[names[k]] = float(p.mean()) if p.size else float("nan")
    return metrics, per_class


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def evaluate(predict, loader, gt: dict, category_ids: list[int] | None = None,
             results_path: str | Path | None = None, progress: bool = False,
             rounded: bool = True) -> EvalResult:
    """Run ``predict`` over ``loader`` (val transforms: straight resize) and score it.

    predict: the "images -> detections" callable, preprocessed batch (B, 3, H, W) float32
    0..255 -> one :class:`~damoyolo.postprocess.Detections` per image in input pixels.  A
    :class:`~damoyolo.eval.predictor.Predictor` (``Predictor.from_model(model)``; a
    :class:`damoyolo.Detector` or an exported file through
    :func:`damoyolo.workflows.evaluate.predictor_from_detector` /
    :func:`~damoyolo.workflows.evaluate.open_predictor`) is timed per stage and gives the
    device, class names and category ids; any other callable is timed as a whole
    (``inference``) and gets the images on the CPU.
    loader yields (images, targets with ``image_id`` and ``orig_size`` (h, w)).  Boxes are
    scaled from input pixels to original pixels by ``orig / input`` per axis.
    ``category_ids``: contiguous label -> original category id (default: the predictor's,
    else the ids of ``gt['categories']`` in order).
    Timing: ``inference`` is the network (for end-to-end exports including the in-graph
    NMS), ``nms`` the decode + NMS outside it.  rounded: results to 0.01 pixel and scores to
    1e-5, as in the results file of ``damoyolo val`` (False: full precision, as the INT8
    export's held-out score compares them).
    """
    stages = predict if isinstance(predict, Predictor) else Predictor(predict, _as_is)
    if category_ids is None:
        category_ids = stages.category_ids or \
            [c["id"] for c in sorted(gt.get("categories", []), key=lambda c: c["id"])]
    device, sync_device = stages.device, stages.sync_device or stages.device
    results: list[dict] = []
    t_pre = t_inf = t_nms = 0.0
    n_img = 0
    skipped: dict[int, str] = {}  # image id -> why its image could not be read
    it = loader
    if progress:
        from tqdm import tqdm
        it = tqdm(loader, desc="val", leave=False)
    t0 = time.perf_counter()
    for images, targets in it:
        images = images.to(device, non_blocking=True)
        _sync(sync_device)
        t1 = time.perf_counter()
        out = stages.forward(images)
        _sync(sync_device)
        t2 = time.perf_counter()
        dets = stages.postprocess(out)
        _sync(sync_device)
        t3 = time.perf_counter()
        t_pre += t1 - t0
        t_inf += t2 - t1
        t_nms += t3 - t2
        h_in, w_in = images.shape[-2:]
        for det, tgt in zip(dets, targets):
            if tgt.get("skipped"):  # its image could not be read: left out of the scores
                skipped[int(tgt["image_id"])] = tgt["skipped"][0]
                continue
            oh, ow = tgt["orig_size"]
            boxes = scale_boxes(det.boxes.float().cpu(), (ow / w_in, oh / h_in), (oh, ow))
            results += detections_to_coco_results(int(tgt["image_id"]), boxes,
                                                  det.scores.float().cpu(), det.labels.cpu(),
                                                  category_ids, rounded=rounded)
        n_img += len(targets)
        t0 = time.perf_counter()
    if results_path is not None:
        from ..outputs import atomic_write_text
        atomic_write_text(results_path, json.dumps(results))
    if skipped:
        gt = {**gt, "images": [im for im in gt.get("images", []) if im["id"] not in skipped],
              "annotations": [a for a in gt.get("annotations", [])
                              if a["image_id"] not in skipped]}
        first = next(iter(skipped.values()))
        print(f"warning: {len(skipped)} unreadable image(s) left out of the evaluation "
              f"(first: {first})", file=sys.stderr)
    metrics, per_class = coco_metrics(gt, results, stages.class_names)
    n = max(n_img, 1)
    timing = {"preprocess": 1e3 * t_pre / n, "inference": 1e3 * t_inf / n, "nms": 1e3 * t_nms / n}
    return EvalResult(metrics, per_class, timing, results, n_img, sorted(skipped))


def _as_is(dets):
    return dets


def format_report(res: EvalResult) -> str:
    """Human-readable metrics, per-class table and timing."""
    lines = ["  ".join(f"{k} {res.metrics[k]:.4f}" for k in METRIC_NAMES)]
    if res.per_class:
        w = max(len(n) for n in res.per_class)
        lines.append(f"{'class':<{w}}  AP@[.5:.95]")
        for n, ap in res.per_class.items():
            lines.append(f"{n:<{w}}  {'-' if ap != ap else f'{ap:.4f}'}")
    if res.timing_ms:
        lines.append("per image: " + ", ".join(f"{k} {v:.1f} ms" for k, v in res.timing_ms.items())
                     + f" ({res.num_images} images)")
    return "\n".join(lines)
