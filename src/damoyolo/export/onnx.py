"""ONNX export: raw decoded outputs, official-style per-level heads, or end-to-end NMS.

Every export goes through the re-parameterised model (RepConv branches and conv+BN
pairs fused).  Three output layouts (``mode``):

``"raw"`` (default)
    ``scores`` (B, A, C) float32 sigmoid probabilities and ``boxes`` (B, A, 4) float32
    xyxy in network-input pixels.  Anchors A ordered stride 8, 16, 32, row-major per
    level (the layout of :meth:`damoyolo.DAMOYOLO.decode`).
``"raw_heads"``
    the official benchmark-mode outputs, per level ``s`` in (8, 16, 32):
    ``cls_s{s}`` (B, C, H/s, W/s) sigmoid scores and ``reg_s{s}`` (B, 4*(R+1), H/s, W/s)
    pre-softmax DFL logits after the per-level scale (channel = side*(R+1) + bin,
    sides l, t, r, b).
``"end2end"``
    NMS inside the graph with the standard ``NonMaxSuppression`` operator (class-aware,
    IoU > ``iou_thresh`` suppresses, score > ``conf_thresh`` kept):
    ``num_dets`` (B, 1) int32, ``det_boxes`` (B, max_det, 4) float32 xyxy input pixels,
    ``det_scores`` (B, max_det) float32, ``det_labels`` (B, max_det) int32; rows past
    ``num_dets`` are padding (boxes 0, scores 0, labels -1); valid rows are sorted by
    descending score.

Input: ``images`` (B, 3, H, W) float32 RGB in [0, 255] (see :mod:`damoyolo.preprocess`).
Metadata (``metadata_props``): key ``damoyolo`` holds a JSON object, an
:class:`~damoyolo.metadata.ExportMetadata` written and read by :mod:`damoyolo.metadata`
(``export_metadata``, ``read_metadata`` are re-exported here); ``names`` and ``imgsz`` are
repeated as plain keys.  :func:`to_onnx` returns the file with the metadata it wrote.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .._optional import import_optional
from ..errors import DamoyoloError
from ..metadata import MODES, ExportMetadata, export_metadata, read_metadata
from ..metadata import set_onnx_metadata as _set_metadata
from ..models.heads.zero_head import decode_dfl, flatten_dfl, make_priors
from ..outputs import atomic_write_bytes, temporary_path

__all__ = ["MODES", "ExportError", "Exported", "RawExport", "RawHeadsExport", "export_onnx",
           "to_onnx", "export_metadata", "add_end2end_nms", "read_metadata"]

DEFAULT_OPSET = 17
MAX_IR_VERSION = 10  # newest IR that onnxruntime/OpenVINO of 2024-2026 load


class ExportError(DamoyoloError, RuntimeError):
    """An export could not be produced (missing dependency, bad option)."""


class Exported(NamedTuple):
    """A written export and the metadata written into (or beside) it."""

    path: Path
    metadata: ExportMetadata


class RawExport(nn.Module):
    """Re-parameterised model + decode: images -> (scores (B,A,C), boxes (B,A,4) xyxy)."""

    def __init__(self, model: nn.Module, input_hw: tuple[int, int]):
        super().__init__()
        self.model = model
        head = model.head
        sizes = [(input_hw[0] // s, input_hw[1] // s) for s in head.strides]
        priors = make_priors(sizes, head.strides)
        self.register_buffer("points", priors[:, :2].clone(), persistent=False)
        self.register_buffer("stride", priors[:, 2:3].clone(), persistent=False)
        self.register_buffer("proj", torch.arange(head.reg_max + 1, dtype=torch.float32),
                             persistent=False)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model(images)
        cls = torch.cat([c.flatten(2) for c in out.cls], dim=2)          # (B, C, A)
        reg = flatten_dfl(out.reg, self.model.head.reg_max, images)     # (B, A, 4, R+1)
        boxes = decode_dfl(reg, self.points, self.stride, self.proj)
        return cls.sigmoid().transpose(1, 2), boxes


class RawHeadsExport(nn.Module):
    """Official benchmark-mode outputs: per level sigmoid scores and DFL logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        out = self.model(images)
        return tuple(c.sigmoid() for c in out.cls) + tuple(out.reg)


class HalfNetwork(nn.Module):
    """The network (backbone, neck, head) in float16 between float32 casts: float32 images in,
    float32 head outputs out, so that the decode and NMS after it stay float32.  For runtimes
    that run each layer in the precision of the graph (strongly typed TensorRT 11)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.net = model.half()

    @property
    def head(self) -> nn.Module:
        return self.net.head

    def forward(self, images: Tensor):
        from ..models.heads.zero_head import HeadOutput
        out = self.net(images.half())
        return HeadOutput([c.float() for c in out.cls], [r.float() for r in out.reg])


def _output_names(mode: str, strides: tuple[int, ...]) -> list[str]:
    if mode == "raw_heads":
        return [f"cls_s{s}" for s in strides] + [f"reg_s{s}" for s in strides]
    return ["scores", "boxes"]


def add_end2end_nms(onnx_model, max_det: int, iou_thresh: float, conf_thresh: float):
    """Append NonMaxSuppression + top-``max_det`` selection to a raw (scores, boxes) graph.

    Works for any batch size (dynamic or static).  Returns the modified ``ModelProto``
    whose outputs are ``num_dets, det_boxes, det_scores, det_labels`` (module docstring).
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    g = onnx_model.graph
    outs = {o.name: o for o in g.output}
    if set(outs) != {"scores", "boxes"}:
        raise ExportError(f"end-to-end NMS needs a raw graph with outputs scores/boxes, got "
                          f"{sorted(outs)}")
    batch_dim = copy.deepcopy(outs["scores"].type.tensor_type.shape.dim[0])
    p = "e2e/"

    def const(name, arr):
        g.initializer.append(numpy_helper.from_array(np.asarray(arr), p + name))
        return p + name

    final = {"num_dets", "det_boxes", "det_scores", "det_labels"}

    def node(op, inputs, outputs, **attrs):
        names = [o if o in final else p + o for o in outputs]
        g.node.append(helper.make_node(op, inputs, names, name=p + outputs[0], **attrs))
        return names

    k_max = const("max_det", np.array([max_det], np.int64))
    iou = const("iou", np.array([iou_thresh], np.float32))
    sth = const("conf", np.array([conf_thresh], np.float32))
    (st,) = node("Transpose", ["scores"], ["scores_t"], perm=[0, 2, 1])       # (B, C, A)
    (sel,) = node("NonMaxSuppression", ["boxes", st, k_max, iou, sth], ["sel"],
                  center_point_box=0)                                          # (N, 3)
    cols = []
    for i, nm in enumerate(("sel_b", "sel_c", "sel_a")):
        cols += node("Gather", [sel, const(f"col{i}", np.array(i, np.int64))], [nm], axis=1)
    sel_b, sel_c, sel_a = cols                                                 # (N,)
    (sel_s,) = node("GatherND", [st, sel], ["sel_s"])                          # (N,)
    (shape,) = node("Shape", ["scores"], ["shape"])
    (bsz,) = node("Gather", [shape, const("zero", np.array(0, np.int64))], ["bsz"])  # scalar
    (bidx,) = node("Range", [const("r0", np.array(0, np.int64)), bsz,
                             const("r1", np.array(1, np.int64))], ["bidx"])  # (B,)
    (bcol,) = node("Unsqueeze", [bidx, const("ax1", np.array([1], np.int64))], ["bcol"])
    (brow,) = node("Unsqueeze", [sel_b, const("ax0", np.array([0], np.int64))], ["brow"])
    (srow,) = node("Unsqueeze", [sel_s, const("ax0b", np.array([0], np.int64))], ["srow"])
    (match,) = node("Equal", [brow, bcol], ["match"])                          # (B, N)
    (mat,) = node("Where", [match, srow, const("neg", np.array(-1.0, np.float32))], ["mat"])
    (bvec,) = node("Unsqueeze", [bsz, const("ax0c", np.array([0], np.int64))], ["bvec"])
    (pshape,) = node("Concat", [bvec, k_max], ["pshape"], axis=0)
    (pad,) = node("Expand", [const("padv", np.full((1, max_det), -1.0, np.float32)), pshape],
                  ["pad"])
    (mat2,) = node("Concat", [mat, pad], ["mat2"], axis=1)                     # (B, N+K)
    topv, topi = node("TopK", [mat2, k_max], ["topv", "topi"], axis=1, largest=1, sorted=1)
    (a_pad,) = node("Concat", [sel_a, const("za", np.zeros(max_det, np.int64))], ["a_pad"],
                    axis=0)
    (c_pad,) = node("Concat", [sel_c, const("mc", np.full(max_det, -1, np.int64))], ["c_pad"],
                    axis=0)
    (top_a,) = node("Gather", [a_pad, topi], ["top_a"], axis=0)                 # (B, K)
    (top_c,) = node("Gather", [c_pad, topi], ["top_c"], axis=0)
    (valid,) = node("Greater", [topv, const("half", np.array(-0.5, np.float32))], ["valid"])
    (vi,) = node("Cast", [valid], ["valid_i"], to=TensorProto.INT32)
    node("ReduceSum", [vi, const("ax1b", np.array([1], np.int64))], ["num_dets"], keepdims=1)
    (vf,) = node("Cast", [valid], ["valid_f"], to=TensorProto.FLOAT)
    (aidx,) = node("Unsqueeze", [top_a, const("ax2", np.array([2], np.int64))], ["aidx"])
    (gb,) = node("GatherND", ["boxes", aidx], ["gboxes"], batch_dims=1)        # (B, K, 4)
    (vf3,) = node("Unsqueeze", [vf, const("ax2b", np.array([2], np.int64))], ["valid_f3"])
    node("Mul", [gb, vf3], ["det_boxes"])
    node("Where", [valid, topv, const("z", np.array(0.0, np.float32))], ["det_scores"])
    # rows past num_dets may hold another image's candidates (score -1 in this row): mask
    (lab,) = node("Where", [valid, top_c, const("m1", np.array(-1, np.int64))], ["lab"])
    node("Cast", [lab], ["det_labels"], to=TensorProto.INT32)

    del g.output[:]
    k = max_det
    g.output.extend([
        helper.make_tensor_value_info("num_dets", TensorProto.INT32, [None, 1]),
        helper.make_tensor_value_info("det_boxes", TensorProto.FLOAT, [None, k, 4]),
        helper.make_tensor_value_info("det_scores", TensorProto.FLOAT, [None, k]),
        helper.make_tensor_value_info("det_labels", TensorProto.INT32, [None, k]),
    ])
    for o in g.output:  # same batch dimension as the inputs (static value or symbolic name)
        o.type.tensor_type.shape.dim[0].CopyFrom(batch_dim)
    return onnx_model


def _simplify(model):
    """onnxslim when installed; otherwise the model unchanged (with a warning)."""
    try:
        import onnxslim
    except ImportError:
        warnings.warn("onnxslim is not installed: exporting without graph simplification "
                      "(pip install 'damoyolo[export]')", stacklevel=3)
        return model
    return onnxslim.slim(model)


def export_onnx(model: nn.Module, path: str | Path, imgsz: tuple[int, int] | None = None,
                mode: str = "raw", dynamic: bool = False, batch: int = 1,
                opset: int = DEFAULT_OPSET, simplify: bool = True, max_det: int = 100,
                conf_thresh: float | None = None, iou_thresh: float | None = None,
                half: bool = False) -> Path:
    """Export ``model`` (a :class:`damoyolo.DAMOYOLO`) to ONNX; returns the written path
    (:func:`to_onnx`, which documents the options, also returns the metadata)."""
    return to_onnx(model, path, imgsz=imgsz, mode=mode, dynamic=dynamic, batch=batch,
                   opset=opset, simplify=simplify, max_det=max_det, conf_thresh=conf_thresh,
                   iou_thresh=iou_thresh, half=half).path


def to_onnx(model: nn.Module, path: str | Path, imgsz: tuple[int, int] | None = None,
            mode: str = "raw", dynamic: bool = False, batch: int = 1,
            opset: int = DEFAULT_OPSET, simplify: bool = True, max_det: int = 100,
            conf_thresh: float | None = None, iou_thresh: float | None = None,
            half: bool = False) -> Exported:
    """Export ``model`` (a :class:`damoyolo.DAMOYOLO`) to ONNX; returns the written path and
    its :class:`~damoyolo.metadata.ExportMetadata`.

    The model is deep-copied, put in eval mode and re-parameterised first.
    imgsz: (H, W) multiples of 32 (default: the preset's input size).
    dynamic: symbolic batch dimension (``batch`` is then only the tracing size).
    conf_thresh/iou_thresh: end-to-end thresholds (default: the preset's).
    half: the network in float16 with float32 inputs and outputs (:class:`HalfNetwork`; for
    strongly typed TensorRT), the decode and NMS in float32.
    """
    onnx = import_optional("onnx", "ONNX export")

    if mode not in MODES:
        raise ExportError(f"unknown ONNX mode {mode!r}; valid: {', '.join(MODES)}")
    if opset < 13:
        raise ExportError(f"opset {opset} < 13 is not supported")
    hw = tuple(int(v) for v in (imgsz or model.input_size))
    if len(hw) != 2 or any(v <= 0 or v % 32 for v in hw):
        raise ExportError(f"input size {hw} must be two positive multiples of 32")
    if max_det < 1:
        raise ExportError(f"max_det must be >= 1, got {max_det}")
    conf = float(model.cfg.head.conf_thresh if conf_thresh is None else conf_thresh)
    iou = float(model.cfg.head.iou_thresh if iou_thresh is None else iou_thresh)

    net = copy.deepcopy(model).float().cpu().eval()
    net.reparameterize()
    core = HalfNetwork(copy.deepcopy(net)) if half else net
    wrapper = RawHeadsExport(core) if mode == "raw_heads" else RawExport(core, hw)
    names = _output_names(mode, net.head.strides)
    axes = None
    if dynamic:
        axes = {"images": {0: "batch"}, **{n: {0: "batch"} for n in names}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.zeros(batch, 3, *hw)
    tmp = temporary_path(path)
    try:  # the temporary goes whether the export or the load fails
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, (x,), str(tmp), opset_version=opset,
                              input_names=["images"], output_names=names, dynamic_axes=axes,
                              dynamo=False, do_constant_folding=True)
        m = onnx.load(str(tmp))
    finally:
        tmp.unlink(missing_ok=True)
    if simplify:
        m = _simplify(m)
    extra = {"opset": opset, "dynamic_batch": bool(dynamic), "outputs": names}
    if half:
        extra["network_dtype"] = "float16"
    if mode == "end2end":
        m = add_end2end_nms(m, max_det, iou, conf)
        extra.update(outputs=["num_dets", "det_boxes", "det_scores", "det_labels"],
                     max_det=max_det, end2end_conf_thresh=conf, end2end_iou_thresh=iou)
    m.ir_version = min(m.ir_version, MAX_IR_VERSION)
    meta = export_metadata(net, hw, mode, batch=None if dynamic else batch, **extra)
    _set_metadata(m, meta)
    onnx.checker.check_model(m)
    atomic_write_bytes(path, m.SerializeToString())
    return Exported(path, meta)
