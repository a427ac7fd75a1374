"""INT8 post-training quantization for CPU deployment (OpenVINO / onnxruntime).

Two back ends, one procedure:

``"openvino"``
    NNCF post-training quantization of the OpenVINO model converted from our ONNX export,
    ``QuantizationPreset.MIXED`` (symmetric int8 weights per output channel, asymmetric
    int8 activations), fast bias correction; written as an IR with FakeQuantize nodes.
``"onnx"``
    onnxruntime static quantization in the QDQ format: int8 weights per output channel,
    int8 activations (S8S8), min/max calibration.

In both, the head's decode -- the sigmoid of the class scores, the DFL softmax and its
expectation (MatMul), the box arithmetic and, for end-to-end graphs, the NMS -- stays float.
Those nodes are found by a graph pattern, not by node index: every node on a path from a
graph output back to the first convolution (the head's prediction convolutions, whose
weights and inputs are quantized but whose outputs are not).  :func:`float_head_onnx` and
:func:`float_head_openvino` check the pattern (one class and one box convolution per level,
a Sigmoid on the way, and for decoded outputs the Softmax + MatMul) and raise
:class:`QuantizeError` when a graph does not have it.

Calibration (:func:`load_calibration`) reads any dataset :func:`damoyolo.data.load_dataset`
accepts (COCO json, YOLO, VOC), a seeded random subset of one split, with the validation
preprocessing (straight INTER_LINEAR resize to the input size, RGB, float32 0..255).

Partial quantization (``max_drop``, in points of AP@[.5:.95] x 100): the graph is cut into
blocks by module path (``backbone.stages.2``, ``neck.merge_3``, ``head.reg_preds.0``, ...;
:func:`graph_blocks`), which works for every preset and for searched backbones.  On a
held-out subset of the same split (images not used for calibration) the fully quantized
model is compared with fp32; if it loses more than ``max_drop``, each block in turn is left
float (the rest quantized) and its sensitivity is the mAP it recovers (ties broken by how
much it lowers the score error against fp32).  The most sensitive blocks are then kept float,
one more at a time, until the held-out drop is within ``max_drop``.  The table goes to a
JSON file and a bar chart to a PNG (matplotlib).

The settings (tool and version, preset / format, calibration data, split, image count,
seed, float head and float blocks, measured drop) are recorded in the export metadata under
``"quantization"``.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from torch import nn

from ..runtime.cpu import is_x86, torch_cpu_has
from .._optional import import_optional
from ..outputs import atomic_write_bytes, atomic_write_text
from .onnx import ExportError

__all__ = ["QuantizeError", "Calibration", "FloatHead", "load_calibration", "float_head_onnx",
           "float_head_openvino", "graph_blocks", "quantize_onnx", "quantize_openvino",
           "export_int8", "Int8Result", "INT8_FORMATS"]

INT8_FORMATS = ("onnx", "openvino")
ONNX_ACTIVATIONS = ("s8", "u8")
_CONV_ONNX = {"Conv", "ConvInteger", "QLinearConv"}
_CONV_OV = {"Convolution", "GroupConvolution"}


class QuantizeError(ExportError):
    """INT8 quantization could not be done (calibration data, graph pattern, option)."""


# ----------------------------------------------------------------------------- calibration

@dataclass
class Calibration:
    """Preprocessed calibration images and, for partial mode, a held-out labelled subset.

    images: uint8 (N, 3, H, W) RGB at the network input size (validation preprocessing);
    holdout: records of the same split not used for calibration (``Record`` objects);
    the rest describes where they came from (recorded in the export metadata).
    """

    images: np.ndarray
    source: str
    split: str | None
    input_hw: tuple[int, int]
    seed: int = 0
    holdout: list = field(default_factory=list, repr=False)
    class_names: list[str] = field(default_factory=list)
    category_ids: list[int] = field(default_factory=list)
    dataset_format: str = ""

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, batch: int = 1) -> Iterator[np.ndarray]:
        """float32 (batch, 3, H, W) arrays; the last batch is filled by repeating images."""
        n = len(self.images)
        for i in range(0, n, batch):
            idx = [(i + k) % n for k in range(batch)]
            yield self.images[idx].astype(np.float32)

    def settings(self) -> dict:
        return {"data": self.source, "split": self.split, "images": len(self),
                "seed": self.seed, "preprocessing": "validation (straight resize)"}


def load_calibration(data: str | Path, split: str | None, input_hw: tuple[int, int],
                     num_images: int = 300, holdout_images: int = 0, seed: int = 0,
                     progress: bool = True) -> Calibration:
    """Read ``num_images`` images of ``split`` of the dataset at ``data`` (seeded random
    subset) with the validation preprocessing; with ``holdout_images`` also keep up to that
    many other images of the split (with their labels) for partial quantization.

    Raises :class:`QuantizeError` naming the path when the dataset is missing, unreadable
    or has no images in that split.
    """
    from ..data import DatasetError, load_dataset
    from ..preprocess import ImageReadError, preprocess_image, read_image

    where = f"{data}" + (f" (split {split})" if split else "")
    if num_images < 1:
        raise QuantizeError(f"--calib-images must be >= 1, got {num_images}")
    if not Path(data).exists():
        raise QuantizeError(f"calibration data {data}: no such file or folder")
    try:
        index = load_dataset(data, split=split)
    except DatasetError as e:
        raise QuantizeError(f"calibration data {where}: {e}") from None
    if len(index) == 0:
        raise QuantizeError(f"calibration data {where}: no images (empty dataset or split)")
    order = np.random.default_rng(seed).permutation(len(index))
    calib_idx = order[:num_images]
    hold = [index.records[int(i)] for i in order[len(calib_idx):len(calib_idx) + holdout_images]]
    if holdout_images and len(hold) < min(holdout_images, 8):
        raise QuantizeError(f"calibration data {where}: {len(index)} images leave only "
                            f"{len(hold)} held out after {len(calib_idx)} calibration images; "
                            f"partial quantization needs at least 8 (lower --calib-images or "
                            f"use a larger split)")
    h, w = input_hw
    out = np.empty((len(calib_idx), 3, h, w), np.uint8)
    it = calib_idx
    if progress:
        from tqdm import tqdm
        it = tqdm(calib_idx, desc="calibration images", unit="img", leave=False)
    for k, i in enumerate(it):
        rec = index.records[int(i)]
        try:
            t, _ = preprocess_image(read_image(rec.path), (h, w))
        except ImageReadError as e:
            raise QuantizeError(f"calibration data {where}: {e}") from None
        out[k] = t.numpy().astype(np.uint8)
    return Calibration(out, str(data), split, (h, w), seed, hold, list(index.class_names),
                       list(index.category_ids), index.format)


# ----------------------------------------------------------------------------- float head

@dataclass(frozen=True)
class FloatHead:
    """The nodes kept float (decode / DFL / sigmoid / NMS) and the head convolutions where
    the pattern stops; ``ops`` counts the kept nodes by op type."""

    nodes: tuple[str, ...]
    convs: tuple[str, ...]
    ops: dict[str, int]


def _walk_tail(outputs, producers, name, is_stop, skip) -> tuple[list, list]:
    """Nodes on every path from ``outputs`` back to the first stop node (exclusive)."""
    tail, stops, seen = [], [], set()
    stack = list(outputs)
    while stack:
        n = stack.pop()
        key = name(n) or id(n)  # unnamed nodes: by identity
        if key in seen:
            continue
        seen.add(key)
        if is_stop(n):
            stops.append(n)
            continue
        if not skip(n):
            tail.append(n)
        stack.extend(producers(n))
    return tail, stops


def _check_head(ops: collections.Counter, convs: list[str], levels: int, decoded: bool,
                reached_input: bool, what: str) -> None:
    problems = []
    if reached_input:
        problems.append("a path from an output reaches the input without a convolution")
    if len(convs) != 2 * levels:
        problems.append(f"{len(convs)} head convolutions, expected {2 * levels} (class + box "
                        f"per level)")
    if not any(k.lower() == "sigmoid" for k in ops):
        problems.append("no Sigmoid on the class path")
    if decoded and not ({"softmax", "matmul"} <= {k.lower() for k in ops}):
        problems.append("no Softmax + MatMul (DFL expectation) on the box path")
    if problems:
        raise QuantizeError(f"{what}: the float-head pattern (outputs back to the head "
                            f"convolutions) was not found: {'; '.join(problems)}")


def float_head_onnx(model, levels: int = 3, decoded: bool | None = None) -> FloatHead:
    """The float head of an ONNX ``ModelProto`` (see the module docstring).

    decoded: whether the outputs are decoded boxes (Softmax + MatMul expected); default:
    unless the outputs are the per-level ``raw_heads`` ones.
    """
    g = model.graph
    prod = {o: n for n in g.node for o in n.output}
    inputs = {i.name for i in g.input}
    reached = []

    def producers(n):
        out = []
        for i in n.input:
            if i in prod:
                out.append(prod[i])
            elif i in inputs:
                reached.append(i)
        return out

    outs = [prod[o.name] for o in g.output if o.name in prod]
    tail, stops = _walk_tail(outs, producers, lambda n: n.name,
                             lambda n: n.op_type in _CONV_ONNX, lambda n: n.op_type == "Constant")
    if decoded is None:
        decoded = not all(o.name.startswith(("cls_s", "reg_s")) for o in g.output)
    ops = collections.Counter(n.op_type for n in tail)
    _check_head(ops, [s.name for s in stops], levels, decoded, bool(reached), "ONNX graph")
    return FloatHead(tuple(sorted(n.name for n in tail)), tuple(sorted(s.name for s in stops)),
                     dict(sorted(ops.items())))


def _ov_producers(op):
    return [i.get_source_output().get_node() for i in op.inputs()]


def _ov_is_conv_unit(op) -> bool:
    """A convolution, or the bias Add OpenVINO splits off a convolution (conv + constant)."""
    t = op.get_type_name()
    if t in _CONV_OV:
        return True
    if t != "Add":
        return False
    ps = [p.get_type_name() for p in _ov_producers(op)]
    return any(p in _CONV_OV for p in ps) and "Constant" in ps


def float_head_openvino(ov_model, levels: int = 3, decoded: bool | None = None) -> FloatHead:
    """The float head of an ``openvino.Model`` (same pattern as :func:`float_head_onnx`;
    the bias ``Add`` OpenVINO splits from a convolution counts as the convolution)."""
    reached = []

    def skip(op):
        t = op.get_type_name()
        if t == "Parameter":
            reached.append(op.get_friendly_name())
        return t in ("Constant", "Result", "Parameter")

    tail, stops = _walk_tail(list(ov_model.get_results()), _ov_producers,
                             lambda op: op.get_friendly_name(), _ov_is_conv_unit, skip)
    names = [o.get_any_name() for o in ov_model.outputs]
    if decoded is None:
        decoded = not all(n.startswith(("cls_s", "reg_s")) for n in names)
    ops = collections.Counter(op.get_type_name() for op in tail)
    convs = [op.get_friendly_name() for op in stops]  # bias Adds (or bare convolutions)
    _check_head(ops, convs, levels, decoded, bool(reached), "OpenVINO model")
    return FloatHead(tuple(sorted(op.get_friendly_name() for op in tail)), tuple(sorted(convs)),
                     dict(sorted(ops.items())))


# ----------------------------------------------------------------------------- blocks

def block_of(node_name: str) -> str | None:
    """The block a node belongs to, from its module path: ``/model/backbone/stages.2/...``
    -> ``backbone.stages.2``; a node directly in ``neck`` -> ``neck``; None for nodes
    outside the model (the decode)."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) < 3 or parts[0] != "model":
        return None
    if len(parts) == 3:  # an op of the part itself (e.g. a Concat of the neck)
        return parts[1]
    return f"{parts[1]}.{parts[2]}"


def graph_blocks(names: Sequence[str], exclude: Sequence[str] = (),
                 consumers: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Node names grouped by :func:`block_of`, in graph order (``exclude``: left out).

    consumers: node -> the nodes reading its outputs; a node whose name carries no module
    path (OpenVINO names a convolution it fused a scale into after the scale, e.g.
    ``Multiply_8894``) then joins the block of its consumers when they all have the same one.
    """
    ex = set(exclude)
    of = {n: block_of(n) for n in names}
    if consumers:
        for n in reversed(list(names)):  # graph order: consumers come later
            if of[n] is None:
                bs = {of.get(c) for c in consumers.get(n, ())}
                if len(bs) == 1:
                    of[n] = bs.pop()
    blocks: dict[str, list[str]] = {}
    for n in names:
        if of[n] is not None and n not in ex:
            blocks.setdefault(of[n], []).append(n)
    return blocks


def _onnx_node_names(model) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type != "Constant"]


def _ov_node_names(ov_model) -> tuple[list[str], dict[str, list[str]]]:
    """Names of the computing ops in graph order, and each op's consumers."""
    ops = [op for op in ov_model.get_ordered_ops()
           if op.get_type_name() not in ("Constant", "Parameter", "Result")]
    consumers: dict[str, list[str]] = {}
    for op in ops:
        for p in _ov_producers(op):
            consumers.setdefault(p.get_friendly_name(), []).append(op.get_friendly_name())
    return [op.get_friendly_name() for op in ops], consumers


# ----------------------------------------------------------------------------- quantizers

@contextlib.contextmanager
def _quiet_logs(*names: str):
    saved = [(n, logging.getLogger(n).level) for n in names]
    for n, _ in saved:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for n, lv in saved:
            logging.getLogger(n).setLevel(lv)


def _input_batch(model_inputs_dim0) -> int:
    return model_inputs_dim0 if isinstance(model_inputs_dim0, int) and model_inputs_dim0 > 0 else 1


def quantize_onnx(src, dst, calib: Calibration, float_nodes: Sequence[str],
                  progress: bool = True, activations: str = "s8"):
    """onnxruntime static QDQ quantization of the ONNX file ``src`` -> ``ModelProto``
    (written to ``dst`` too): int8 per-channel weights, ``activations`` ``"s8"`` (S8S8, the
    default) or ``"u8"`` (U8S8), min/max calibration, ``float_nodes`` excluded."""
    if activations not in ONNX_ACTIVATIONS:
        raise QuantizeError(f"activations {activations!r}: valid {', '.join(ONNX_ACTIVATIONS)}")
    onnx = import_optional("onnx", "INT8 ONNX export")
    q = import_optional("onnxruntime.quantization", "INT8 ONNX export")
    m = onnx.load(str(src))
    dim = m.graph.input[0].type.tensor_type.shape.dim[0]
    batch = _input_batch(dim.dim_value if dim.HasField("dim_value") else None)
    batches = calib.batches(batch)
    if progress:
        from tqdm import tqdm
        batches = tqdm(batches, total=-(-len(calib) // batch), desc="onnxruntime calibration",
                       unit="batch", leave=False)

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"images": x}

    with _quiet_logs("root", "onnxruntime"):
        q.quantize_static(str(src), str(dst), Reader(), quant_format=q.QuantFormat.QDQ,
                          per_channel=True,
                          activation_type=q.QuantType.QInt8 if activations == "s8" else
                          q.QuantType.QUInt8,
                          weight_type=q.QuantType.QInt8, calibrate_method=q.CalibrationMethod.MinMax,
                          nodes_to_exclude=list(float_nodes))
    return onnx.load(str(dst))


def quantize_openvino(ov_model, calib: Calibration, float_nodes: Sequence[str],
                      subset_size: int | None = None):
    """NNCF PTQ (MIXED preset) of an ``openvino.Model``; ``float_nodes`` in the ignored
    scope.  Returns the quantized ``openvino.Model``."""
    nncf = import_optional("nncf", "INT8 OpenVINO export")
    pshape = ov_model.inputs[0].get_partial_shape()
    batch = pshape[0].get_length() if pshape[0].is_static else 1
    n = -(-len(calib) // batch)

    class Batches:  # re-iterable (NNCF reads it more than once), one batch in memory
        def __iter__(self):
            return calib.batches(batch)

        def __len__(self):
            return n

    with _quiet_logs("nncf"):
        return nncf.quantize(ov_model, nncf.Dataset(Batches()),
                             preset=nncf.QuantizationPreset.MIXED, subset_size=subset_size or n,
                             ignored_scope=nncf.IgnoredScope(names=list(float_nodes)))


# ----------------------------------------------------------------------------- evaluation

class _Holdout:
    """Held-out images (preprocessed once) and their ground truth, scored like ``val``."""

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
        from ..data.results import detections_to_coco_results
        from ..eval.coco import coco_metrics
        from ..infer.detector import Detector
        from ..postprocess import scale_boxes
        det = Detector(str(path), backend=backend, threads=threads, batch_size=1)
        results, errs = [], []
        for k, (img, tgt) in enumerate(self.items):
            x = img.float()[None]
            outs = det.forward(x)
            d = det.postprocess(outs)[0]
            oh, ow = tgt["orig_size"]
            b = scale_boxes(d.boxes, (ow / x.shape[-1], oh / x.shape[-2]), (oh, ow))
            results += detections_to_coco_results(tgt["image_id"], b.numpy(), d.scores.numpy(),
                                                  d.labels.numpy(), self.index.category_ids)
            scores = outs[0][0]
            if reference:
                keep = scores.max(1).values > 0.1
                self.ref.append((keep, scores[keep]))
            elif self.ref:
                keep, ref = self.ref[k]
                if len(ref):
                    errs.append(float((scores[keep] - ref).abs().mean()))
        metrics, _ = coco_metrics(self.gt, results)
        return metrics["AP"], float(np.mean(errs)) if errs else 0.0


# ----------------------------------------------------------------------------- export

@dataclass
class Int8Result:
    """The written model, the recorded settings and, in partial mode, the sensitivity table."""

    path: Path
    settings: dict
    sensitivity: dict | None = None
    table_path: Path | None = None
    chart_path: Path | None = None


def cpu_has_int8_dot() -> bool:
    """Whether this CPU has an int8 dot-product instruction (AVX-512 VNNI, or AMX-INT8 tiles).
    Without one, onnxruntime's x86 int8 kernels sum pairs of u8 x s8 products in saturating
    int16 (``vpmaddubsw``) and can lose accuracy that the quantization itself does not."""
    return torch_cpu_has("vnni", "amx_tile")


INT8_NO_DOT_NOTE = ("note: this CPU has no VNNI: onnxruntime's int8 kernels sum in saturating "
                    "int16 here and can lose accuracy the quantization does not; check the INT8 "
                    "model with 'damoyolo val' on the CPU that will run it, or export "
                    "--format openvino")


def _tool_settings(fmt: str, activations: str = "s8") -> dict:
    if fmt == "openvino":
        import nncf
        return {"tool": f"nncf {nncf.__version__}", "method": "post-training quantization",
                "preset": "mixed", "weights": "int8 symmetric per channel",
                "activations": "int8 asymmetric per tensor", "fast_bias_correction": True}
    import onnxruntime
    return {"tool": f"onnxruntime {onnxruntime.__version__} quantize_static",
            "format": "QDQ", "weights": "int8 symmetric per channel (S8)",
            "activations": f"{'int8' if activations == 's8' else 'uint8'} asymmetric per "
                           f"tensor ({activations.upper()})", "scheme": f"{activations.upper()}S8",
            "calibration_method": "minmax"}


class _Target:
    """Quantizes the same fp32 graph with a given set of float blocks, for one back end."""

    def __init__(self, fmt: str, fp32_onnx: Path, calib: Calibration, levels: int,
                 workdir: Path, progress: bool, activations: str = "s8"):
        self.fmt, self.src, self.calib, self.dir, self.progress = fmt, fp32_onnx, calib, workdir, \
            progress
        self.activations = activations
        self.runs = 0
        if fmt == "openvino":
            self.ov = import_optional("openvino", "INT8 OpenVINO export")
            import_optional("nncf", "INT8 OpenVINO export")
            self.model = self.ov.convert_model(str(fp32_onnx))
            self.head = float_head_openvino(self.model, levels)
            names, consumers = _ov_node_names(self.model)
        else:
            onnx = import_optional("onnx", "INT8 ONNX export")
            import_optional("onnxruntime", "INT8 ONNX export")
            proto = onnx.load(str(fp32_onnx))
            self.head = float_head_onnx(proto, levels)
            names, consumers = _onnx_node_names(proto), None
        self.blocks = graph_blocks(names, exclude=self.head.nodes, consumers=consumers)

    @property
    def backend(self) -> str:
        return "openvino" if self.fmt == "openvino" else "onnxruntime"

    def float_nodes(self, float_blocks: Sequence[str]) -> list[str]:
        out = list(self.head.nodes)
        for b in float_blocks:
            out += self.blocks[b]
        return out

    def quantize(self, float_blocks: Sequence[str] = (), path: Path | None = None):
        """Quantize; returns (written path, model object: ModelProto / openvino.Model)."""
        self.runs += 1
        nodes = self.float_nodes(float_blocks)
        if self.fmt == "openvino":
            q = quantize_openvino(self.model.clone(), self.calib, nodes)
            path = path or self.dir / f"q{self.runs}.xml"
            self.ov.save_model(q, str(path), compress_to_fp16=False)
            return path, q
        path = path or self.dir / f"q{self.runs}.onnx"
        return path, quantize_onnx(self.src, path, self.calib, nodes,
                                   progress=self.progress and self.runs == 1,
                                   activations=self.activations)


def _sensitivity(target: _Target, hold: _Holdout, max_drop: float, threads: int | None,
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
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def export_int8(model: nn.Module, path: str | Path, format: str = "openvino", *,
                data: str | Path, split: str | None = "train", calib_images: int = 300,
                max_drop: float | None = None, holdout_images: int = 200, seed: int = 0,
                threads: int | None = None, report: str | Path | None = None,
                onnx_activations: str = "s8", progress: bool = True, log=print,
                **onnx_kwargs) -> Int8Result:
    """Export ``model`` as an INT8 ONNX (QDQ) or OpenVINO IR file (module docstring).

    format: ``"openvino"`` (NNCF, MIXED preset) or ``"onnx"`` (onnxruntime QDQ S8S8).
    data / split / calib_images / seed: the calibration images (:func:`load_calibration`).
    max_drop: partial mode, the largest held-out AP drop accepted (points); ``holdout_images``
    of the split (not used for calibration) measure it.  report: path prefix of the
    sensitivity table (``<report>.json``) and chart (``<report>.png``); default beside
    ``path`` as ``<stem>_sensitivity``.  onnx_activations: ``"s8"`` (S8S8) or ``"u8"``
    (U8S8) for the onnxruntime back end.  onnx_kwargs: as for :func:`export_onnx`.
    """
    from ..metadata import read_metadata, set_onnx_metadata, set_openvino_metadata
    from .onnx import add_end2end_nms, export_onnx

    if format not in INT8_FORMATS:
        raise QuantizeError(f"INT8 export supports {', '.join(INT8_FORMATS)}, not {format!r}")
    if max_drop is not None and max_drop < 0:
        raise QuantizeError(f"--max-drop must be >= 0 points, got {max_drop}")
    if format == "onnx" and onnx_activations not in ONNX_ACTIVATIONS:
        raise QuantizeError(f"activations {onnx_activations!r}: valid "
                            f"{', '.join(ONNX_ACTIVATIONS)}")
    needs = ("openvino", "nncf") if format == "openvino" else ("onnx", "onnxruntime.quantization")
    for mod in needs:  # before reading any image
        import_optional(mod, f"INT8 {'OpenVINO' if format == 'openvino' else 'ONNX'} export")
    path = Path(path)
    if format == "openvino" and path.suffix != ".xml":
        path = path.with_suffix(".xml")
    if format == "onnx" and is_x86() and not cpu_has_int8_dot():
        log(INT8_NO_DOT_NOTE)
    hw = tuple(int(v) for v in (onnx_kwargs.get("imgsz") or model.input_size))
    calib = load_calibration(data, split, hw, calib_images,
                             holdout_images if max_drop is not None else 0, seed, progress)
    levels = len(model.head.strides)
    mode = onnx_kwargs.get("mode", "raw")
    settings = {"dtype": "int8", **_tool_settings(format, onnx_activations),
                "calibration": calib.settings()}
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = Path(report) if report else path.with_name(f"{path.stem}_sensitivity")
    table_path = prefix.with_suffix(".json")
    head_info = {"preset": model.cfg.name, "format": format, "input_size": list(hw),
                 "calibration": calib.settings()}
    if max_drop is not None:
        prefix.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        table = None
        float_blocks: list[str] = []
        if max_drop is not None:
            kw = {**onnx_kwargs, "mode": "raw", "dynamic": False, "batch": 1}
            search_src = export_onnx(model, td / "search_fp32.onnx", **kw)
            search = _Target(format, search_src, calib, levels, td, progress, onnx_activations)
            fp32_eval = search_src
            if format == "openvino":
                fp32_eval = td / "search_fp32.xml"
                m0 = search.model.clone()
                set_openvino_metadata(m0, read_metadata(search_src))
                search.ov.save_model(m0, str(fp32_eval), compress_to_fp16=False)
            # the temporary quantized files need the metadata the backends read
            search.quantize = _with_metadata(search, read_metadata(search_src))
            table = _sensitivity(search, _Holdout(calib), max_drop, threads, fp32_eval, progress, log,
                                 save=lambda t: atomic_write_text(table_path, json.dumps(
                                     {**head_info, **t}, indent=1)))
            float_blocks = list(table["float_blocks"])
        # the requested graph; an ONNX end-to-end graph gets its NMS after quantization
        e2e_after = format == "onnx" and mode == "end2end"
        kw = dict(onnx_kwargs)
        if e2e_after:
            kw["mode"] = "raw"
        src = export_onnx(model, td / "fp32.onnx", **kw)
        meta = read_metadata(src)
        target = _Target(format, src, calib, levels, td, progress, onnx_activations)
        unknown = [b for b in float_blocks if b not in target.blocks]
        if unknown:
            raise QuantizeError(f"blocks {unknown} of the search graph are not in the export")
        settings.update(float_head={"nodes": len(target.head.nodes), "ops": target.head.ops,
                                    "stops_at": list(target.head.convs)},
                        float_blocks=float_blocks, num_blocks=len(target.blocks))
        if table is not None:
            settings.update(max_drop=max_drop, holdout_images=table["holdout_images"],
                            holdout_fp32_ap=table["fp32_ap"],
                            holdout_full_int8_ap=table["full_int8_ap"],
                            holdout_drop=table["final_drop"])
        if format == "openvino":
            _, q = target.quantize(float_blocks, td / "final.xml")
            meta["openvino_weights"] = "int8"
            meta["quantization"] = settings
            from .openvino import write_ir_pair
            write_ir_pair(target.ov, q, path, meta)
        else:
            import onnx
            _, q = target.quantize(float_blocks, td / "final.onnx")
            if e2e_after:
                conf = float(model.cfg.head.conf_thresh if onnx_kwargs.get("conf_thresh") is None
                             else onnx_kwargs["conf_thresh"])
                iou = float(model.cfg.head.iou_thresh if onnx_kwargs.get("iou_thresh") is None
                            else onnx_kwargs["iou_thresh"])
                max_det = int(onnx_kwargs.get("max_det", 100))
                q = add_end2end_nms(q, max_det, iou, conf)
                meta.update(mode="end2end", max_det=max_det, end2end_conf_thresh=conf,
                            end2end_iou_thresh=iou,
                            outputs=["num_dets", "det_boxes", "det_scores", "det_labels"])
            meta["quantization"] = settings
            set_onnx_metadata(q, meta)
            onnx.checker.check_model(q)
            atomic_write_bytes(path, q.SerializeToString())
    res = Int8Result(path, settings, table)
    if table is not None:
        res.table_path = table_path
        table_out = {**head_info, **table}
        atomic_write_text(table_path, json.dumps(table_out, indent=1))
        if table["blocks"]:
            res.chart_path = write_sensitivity_chart(
                table_out, prefix.with_suffix(".png"),
                f"{model.cfg.name} {format} INT8: per-block sensitivity "
                f"({table['holdout_images']} held-out images)")
    return res


def _with_metadata(target: _Target, meta: dict):
    """Wrap ``target.quantize`` so every file it writes carries ``meta`` (for the backends)."""
    from ..metadata import set_onnx_metadata, set_openvino_metadata
    inner = target.quantize

    def quantize(float_blocks=(), path=None):
        p, q = inner(float_blocks, path)
        if target.fmt == "openvino":
            set_openvino_metadata(q, meta)
            target.ov.save_model(q, str(p), compress_to_fp16=False)
        else:
            q = copy.deepcopy(q)
            set_onnx_metadata(q, meta)
            p.write_bytes(q.SerializeToString())
        return p, q
    return quantize
