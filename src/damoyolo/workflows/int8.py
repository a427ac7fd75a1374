"""INT8 export as a user runs it: calibrate, optionally search which blocks stay float, write.

The graph work (calibration images, the float head, the block partition, the quantizers and
writing the model with its metadata) is :mod:`damoyolo.export.quantize`; this module adds
what needs the other primitives: the held-out score (through :func:`damoyolo.eval.evaluate`
on :class:`damoyolo.Detector` backends), the sensitivity search and its chart.

Partial quantization (``max_drop``, in points of AP@[.5:.95] x 100): the graph is cut into
blocks by module path (``backbone.stages.2``, ``neck.merge_3``, ``head.reg_preds.0``, ...;
:func:`damoyolo.export.int8_graph.graph_blocks`), which works for every preset and for
searched backbones.  On a held-out subset of the same split (images not used for
calibration) the fully quantized model is compared with fp32; if it loses more than
``max_drop``, each block in turn is left float (the rest quantized) and its sensitivity is the
mAP it recovers (ties broken by how much it lowers the score error against fp32).  The most
sensitive blocks are then kept float, one more at a time, until the held-out drop is within
``max_drop``.  The table goes to a JSON file and a bar chart to a PNG (matplotlib).

The settings (tool and version, preset / format, calibration data, split, image count,
seed, float head and float blocks, measured drop) are recorded in the export metadata under
``"quantization"``.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from .._optional import import_optional
from ..metadata import ExportMetadata
from ..export.quantize import (INT8_FORMATS, ONNX_ACTIVATIONS, Calibration, QuantizeError,
                               QuantTarget, int8_cpu_note, load_calibration, write_int8)
from ..outputs import atomic_write_text

__all__ = ["Int8Options", "Int8Result", "export_int8", "write_sensitivity_chart"]


@dataclass(frozen=True)
class Int8Options:
    """What an INT8 export calibrates on, and how far partial mode may go.

    data / split / calib_images / seed: the calibration images
    (:func:`~damoyolo.export.quantize.load_calibration`).  max_drop: partial mode, the largest
    held-out AP drop accepted (points); ``holdout_images`` of the split (not used for
    calibration) measure it, the backend on ``threads`` threads.  report: path prefix of the
    sensitivity table (``<report>.json``) and chart (``<report>.png``); default beside the
    export as ``<stem>_sensitivity``.  onnx_activations: ``"s8"`` (S8S8) or ``"u8"`` (U8S8)
    for the onnxruntime back end.
    """

    data: str | Path
    split: str | None = "train"
    calib_images: int = 300
    seed: int = 0
    max_drop: float | None = None
    holdout_images: int = 200
    threads: int | None = None
    report: str | Path | None = None
    onnx_activations: str = "s8"

    @classmethod
    def take(cls, kwargs: dict) -> tuple["Int8Options", dict]:
        """The options among the keywords ``kwargs``, and the others."""
        names = {f.name for f in dataclasses.fields(cls)}
        return (cls(**{k: v for k, v in kwargs.items() if k in names}),
                {k: v for k, v in kwargs.items() if k not in names})


@dataclass
class Int8Result:
    """The written model, the recorded settings and, in partial mode, the sensitivity table;
    ``metadata``: the export metadata written with the model (``settings`` is its
    ``quantization``)."""

    path: Path
    settings: dict
    sensitivity: dict | None = None
    table_path: Path | None = None
    chart_path: Path | None = None
    metadata: ExportMetadata | None = None


def export_int8(model: nn.Module, path: str | Path, format: str = "openvino",
                options: Int8Options | None = None, *, progress: bool = True, log=print,
                **kwargs) -> Int8Result:
    """Export ``model`` as an INT8 ONNX (QDQ) or OpenVINO IR file (module docstring).

    format: ``"openvino"`` (NNCF, MIXED preset) or ``"onnx"`` (onnxruntime QDQ S8S8).
    options: :class:`Int8Options`, or its fields as keywords (``data=``, ``max_drop=``, ...).
    The other keywords: as for :func:`~damoyolo.export.export_onnx`.
    """
    if options is None:
        options, kwargs = Int8Options.take(kwargs)
    opts, partial = options, options.max_drop is not None
    _check(format, opts)
    path = Path(path)
    if format == "openvino" and path.suffix != ".xml":
        path = path.with_suffix(".xml")
    note = int8_cpu_note(format)
    if note:
        log(note)
    hw = tuple(int(v) for v in (kwargs.get("imgsz") or model.input_size))
    calib = load_calibration(opts.data, opts.split, hw, opts.calib_images,
                             opts.holdout_images if partial else 0, opts.seed, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = Path(opts.report) if opts.report else path.with_name(f"{path.stem}_sensitivity")
    head_info = {"preset": model.cfg.name, "format": format, "input_size": list(hw),
                 "calibration": calib.settings()}
    if partial:
        prefix.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as td:
        table = None
        if partial:
            table = _search(model, format, calib, opts, Path(td), progress, log,
                            save=lambda t: atomic_write_text(prefix.with_suffix(".json"),
                                                             json.dumps({**head_info, **t},
                                                                        indent=1)),
                            onnx_kwargs=kwargs)
        meta = write_int8(model, path, format, calib, Path(td),
                          float_blocks=table["float_blocks"] if table else [],
                          extra_settings=_holdout_settings(table, opts.max_drop),
                          activations=opts.onnx_activations, progress=progress, **kwargs)
    res = Int8Result(path, meta.quantization, table, metadata=meta)
    if table is not None:
        _write_report(res, {**head_info, **table}, prefix,
                      f"{model.cfg.name} {format} INT8: per-block sensitivity "
                      f"({table['holdout_images']} held-out images)")
    return res


def _check(fmt: str, opts: Int8Options) -> None:
    """Refuse a bad option, and name a missing optional package, before any image is read."""
    if fmt not in INT8_FORMATS:
        raise QuantizeError(f"INT8 export supports {', '.join(INT8_FORMATS)}, not {fmt!r}")
    if opts.max_drop is not None and opts.max_drop < 0:
        raise QuantizeError(f"--max-drop must be >= 0 points, got {opts.max_drop}")
    if fmt == "onnx" and opts.onnx_activations not in ONNX_ACTIVATIONS:
        raise QuantizeError(f"activations {opts.onnx_activations!r}: valid "
                            f"{', '.join(ONNX_ACTIVATIONS)}")
    needs = ("openvino", "nncf") if fmt == "openvino" else ("onnx", "onnxruntime.quantization")
    for mod in needs:
        import_optional(mod, f"INT8 {'OpenVINO' if fmt == 'openvino' else 'ONNX'} export")


def _search(model: nn.Module, fmt: str, calib: Calibration, opts: Int8Options, workdir: Path,
            progress: bool, log, save, onnx_kwargs: dict) -> dict:
    """Partial mode: the sensitivity table of the raw graph's blocks (:func:`_sensitivity`);
    the temporary quantized files carry the export metadata the backends read."""
    from ..export.onnx import to_onnx
    kw = {**onnx_kwargs, "mode": "raw", "dynamic": False, "batch": 1}
    src, meta = to_onnx(model, workdir / "search_fp32.onnx", **kw)
    target = QuantTarget(fmt, src, calib, len(model.head.strides), workdir, progress,
                         opts.onnx_activations, meta=meta)
    return _sensitivity(target, _Holdout(calib), opts.max_drop, opts.threads,
                        target.fp32_path(), progress, log, save=save)


def _holdout_settings(table: dict | None, max_drop: float | None) -> dict | None:
    """What partial mode adds to the ``"quantization"`` metadata."""
    if table is None:
        return None
    return {"max_drop": max_drop, "holdout_images": table["holdout_images"],
            "holdout_fp32_ap": table["fp32_ap"], "holdout_full_int8_ap": table["full_int8_ap"],
            "holdout_drop": table["final_drop"]}


def _write_report(res: Int8Result, table: dict, prefix: Path, title: str) -> None:
    """The sensitivity table (``<prefix>.json``) and, when blocks were measured, its chart."""
    res.table_path = prefix.with_suffix(".json")
    atomic_write_text(res.table_path, json.dumps(table, indent=1))
    if table["blocks"]:
        res.chart_path = write_sensitivity_chart(table, prefix.with_suffix(".png"), title)


# ----------------------------------------------------------------------------- held-out score

class _Holdout:
    """Held-out images (preprocessed once) and their ground truth, scored like ``val``
    (:func:`damoyolo.eval.evaluate`; results at full precision, not rounded)."""

    def __init__(self, calib: Calibration):
        import torch

        from ..data import DatasetIndex
        from ..data.dataset import DetectionDataset
        self.index = DatasetIndex(list(calib.holdout), calib.class_names, calib.category_ids,
                                  calib.source, calib.dataset_format or "coco")
        ds = DetectionDataset(self.index, input_size=calib.input_hw, train=False)
        self.items = []
        for i in range(len(ds)):
            img, tgt = ds[i]
            self.items.append((img.to(torch.uint8), tgt))  # exact: resized uint8 pixels
        self.gt = self.index.to_coco_dict()
        self.ref: list = []  # fp32 scores per image (for the score error)

    def __len__(self) -> int:
        return len(self.items)

    def evaluate(self, path, backend: str, threads: int | None, reference: bool = False
                 ) -> tuple[float, float]:
        """(AP@[.5:.95], mean |score - fp32 score| over anchors fp32 scores above 0.1).

        Scores are the first output (raw graphs); the search always runs on a raw graph."""
        from ..eval import Predictor, evaluate
        from ..infer.detector import Detector
        det = Detector(str(path), backend=backend, threads=threads, batch_size=1)
        scores = []  # each image's first output, as the network gives it

        def forward(x):
            outs = det.forward(x)
            scores.append(outs[0][0])
            return outs

        batches = ((img.float()[None], [tgt]) for img, tgt in self.items)
        res = evaluate(Predictor(forward, det.postprocess), batches, self.gt,
                       self.index.category_ids, rounded=False)
        errs = []
        for k, s in enumerate(scores):
            if reference:
                keep = s.max(1).values > 0.1
                self.ref.append((keep, s[keep]))
            elif self.ref:
                keep, ref = self.ref[k]
                if len(ref):
                    errs.append(float((s[keep] - ref).abs().mean()))
        return res.metrics["AP"], float(np.mean(errs)) if errs else 0.0


# ----------------------------------------------------------------------------- search

def _sensitivity(target: QuantTarget, hold: _Holdout, max_drop: float, threads: int | None,
                 fp32_path: Path, progress: bool, log, save=lambda table: None) -> dict:
    """The partial-quantization search (module docstring); returns the table.

    target: ``.backend``, ``.blocks`` (name -> nodes) and ``.quantize(float_blocks)`` ->
    (path, model); hold: ``.evaluate(path, backend, threads, reference=False)`` -> (AP,
    score error) and ``len(hold)`` images."""
    be = target.backend
    t0 = time.perf_counter()
    fp32_map, _ = hold.evaluate(fp32_path, be, threads, reference=True)
    full_path, _ = target.quantize(())
    full_map, full_err = hold.evaluate(full_path, be, threads)
    drop = 100 * (fp32_map - full_map)
    log(f"held-out {len(hold)} images: fp32 AP {fp32_map:.4f}, full INT8 AP "
        f"{full_map:.4f} (drop {drop:.2f} points, target <= {max_drop})")
    table = {"holdout_images": len(hold), "max_drop": max_drop,
             "fp32_ap": round(fp32_map, 5), "full_int8_ap": round(full_map, 5),
             "full_drop": round(drop, 3), "full_score_err": round(full_err, 6),
             "method": "leave one block float at a time; gain = AP recovered (points)",
             "blocks": [], "steps": [], "float_blocks": []}
    if drop <= max_drop:
        table.update(final_drop=round(drop, 3), final_ap=round(full_map, 5), met=True)
        return table
    names = list(target.blocks)
    it = names
    if progress:
        from tqdm import tqdm
        it = tqdm(names, desc="block sensitivity", unit="block", leave=False)
    rows = []
    for b in it:
        p, _ = target.quantize([b])
        ap, err = hold.evaluate(p, be, threads)
        rows.append({"block": b, "nodes": len(target.blocks[b]), "ap_block_float": round(ap, 5),
                     "gain": round(100 * (ap - full_map), 3),
                     "score_err_reduction": round(full_err - err, 6)})
        if Path(p).is_file():
            Path(p).unlink()
            Path(p).with_suffix(".bin").unlink(missing_ok=True)
    rows.sort(key=lambda r: (-r["gain"], -r["score_err_reduction"]))
    table["blocks"] = rows
    save(table)
    # the k most sensitive blocks float: k = 1, 2, 4, ... until the target is met, then
    # bisection down to the smallest k that meets it (the drop falls, up to noise, with k)
    tried: dict[int, tuple[float, float]] = {}

    def trial(k: int) -> bool:
        if k not in tried:
            chosen = [r["block"] for r in rows[:k]]
            p, _ = target.quantize(chosen)
            ap, err = hold.evaluate(p, be, threads)
            d = 100 * (fp32_map - ap)
            tried[k] = (ap, d)
            table["steps"].append({"float_blocks": chosen, "ap": round(ap, 5),
                                   "drop": round(d, 3), "score_err": round(err, 6)})
            log(f"  {k} most sensitive block(s) float: AP {ap:.4f}, drop {d:.2f}")
            save(table)
        return tried[k][1] <= max_drop

    n, lo, hi, k = len(rows), 0, None, 1
    while k < n and hi is None:
        if trial(k):
            hi = k
        else:
            lo, k = k, 2 * k
    if hi is None and trial(n):
        hi = n
    if hi is not None:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if trial(mid):
                hi = mid
            else:
                lo = mid
    best = hi if hi is not None else min(tried, key=lambda j: tried[j][1])
    table["float_blocks"] = [r["block"] for r in rows[:best]]
    table["final_ap"] = round(tried[best][0], 5)
    table["final_drop"] = round(tried[best][1], 3)
    table["met"] = hi is not None
    table["seconds"] = round(time.perf_counter() - t0, 1)
    return table


def write_sensitivity_chart(table: dict, path: str | Path, title: str = "") -> Path:
    """A horizontal bar chart of the per-block gains, float-kept blocks highlighted."""
    mpl = import_optional("matplotlib", "the sensitivity chart")
    mpl.use("Agg")
    import matplotlib.pyplot as plt
    rows = table["blocks"]
    chosen = set(table.get("float_blocks", []))
    fig, ax = plt.subplots(figsize=(7, 0.28 * max(len(rows), 4) + 1.4))
    labels = [r["block"] for r in rows][::-1]
    gains = [r["gain"] for r in rows][::-1]
    colors = ["tab:red" if b in chosen else "tab:blue" for b in labels]
    ax.barh(range(len(rows)), gains, color=colors)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlabel("AP@[.5:.95] recovered when this block alone stays float (points)")
    ax.set_title(title or "INT8 block sensitivity", fontsize=9)
    ax.text(0.99, 0.01, f"full INT8 drop {table['full_drop']:.2f} pts; float (red) "
            f"-> drop {table['final_drop']:.2f} pts", transform=ax.transAxes, ha="right",
            va="bottom", fontsize=7)
    fig.tight_layout()
    from ..outputs import atomic_output
    path = Path(path)
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
    return path
