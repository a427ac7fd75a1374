"""INT8 post-training quantization for CPU deployment (OpenVINO / onnxruntime): the graph work.

Two back ends, one procedure:

``"openvino"``
    NNCF post-training quantization of the OpenVINO model converted from our ONNX export,
    ``QuantizationPreset.MIXED`` (symmetric int8 weights per output channel, asymmetric
    int8 activations), fast bias correction; written as an IR with FakeQuantize nodes.
``"onnx"``
    onnxruntime static quantization in the QDQ format: int8 weights per output channel,
    int8 activations (S8S8), min/max calibration.

In both, the head's decode stays float: the float-head pattern and the block partition are
in :mod:`damoyolo.export.int8_graph` (their names are importable from here too).

Calibration (:func:`load_calibration`) reads any dataset :func:`damoyolo.data.load_dataset`
accepts (COCO json, YOLO, VOC), a seeded random subset of one split, with the validation
preprocessing (straight INTER_LINEAR resize to the input size, RGB, float32 0..255).

:class:`QuantTarget` quantizes one fp32 graph with a chosen set of blocks kept float;
:func:`write_int8` writes the requested graph quantized, with its export metadata (returned,
an :class:`~damoyolo.metadata.ExportMetadata`) and the settings (tool and version, preset /
format, calibration data, split, image count, seed, float head and float blocks) under
``"quantization"``.  The INT8 export as a user runs it,
with partial mode's held-out score and sensitivity search, is
:func:`damoyolo.workflows.int8.export_int8`.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from torch import nn

from .._moved import moved
from .._optional import import_optional
from ..metadata import ExportMetadata
from ..runtime.cpu import is_x86, torch_cpu_has
from ..outputs import atomic_write_bytes
from .int8_graph import (FloatHead, QuantizeError, _onnx_node_names, _ov_node_names, block_of,
                         float_head_onnx, float_head_openvino, graph_blocks)

__all__ = ["QuantizeError", "Calibration", "FloatHead", "load_calibration", "float_head_onnx",
           "float_head_openvino", "block_of", "graph_blocks", "quantize_onnx",
           "quantize_openvino", "QuantTarget", "write_int8", "cpu_has_int8_dot",
           "int8_cpu_note", "INT8_FORMATS", "ONNX_ACTIVATIONS"]

INT8_FORMATS = ("onnx", "openvino")
ONNX_ACTIVATIONS = ("s8", "u8")


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


# ----------------------------------------------------------------------------- targets

def cpu_has_int8_dot() -> bool:
    """Whether this CPU has an int8 dot-product instruction (AVX-512 VNNI, or AMX-INT8 tiles).
    Without one, onnxruntime's x86 int8 kernels sum pairs of u8 x s8 products in saturating
    int16 (``vpmaddubsw``) and can lose accuracy that the quantization itself does not."""
    return torch_cpu_has("vnni", "amx_tile")


INT8_NO_DOT_NOTE = ("note: this CPU has no VNNI: onnxruntime's int8 kernels sum in saturating "
                    "int16 here and can lose accuracy the quantization does not; check the INT8 "
                    "model with 'damoyolo val' on the CPU that will run it, or export "
                    "--format openvino")


def int8_cpu_note(fmt: str) -> str | None:
    """:data:`INT8_NO_DOT_NOTE` when an onnxruntime INT8 model is made on an x86 CPU without
    an int8 dot product (its accuracy there can be lower than the quantization's), else None."""
    return INT8_NO_DOT_NOTE if fmt == "onnx" and is_x86() and not cpu_has_int8_dot() else None


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


class QuantTarget:
    """One fp32 ONNX graph, quantized for one back end with a given set of blocks kept float.

    meta: the export metadata every file :meth:`quantize` writes carries (the backends read
    it; a search scores those files), or None: written as the quantizer gives them.
    """

    def __init__(self, fmt: str, fp32_onnx: Path, calib: Calibration, levels: int,
                 workdir: Path, progress: bool, activations: str = "s8",
                 meta: ExportMetadata | None = None):
        self.fmt, self.src, self.calib, self.dir, self.progress = fmt, fp32_onnx, calib, workdir, \
            progress
        self.activations = activations
        self.meta = meta
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

    def fp32_path(self) -> Path:
        """The fp32 graph as this back end reads it, with ``meta``: the ONNX file itself, or
        the converted OpenVINO model written beside it (``<stem>.xml``)."""
        if self.fmt != "openvino":
            return self.src
        from ..metadata import read_metadata, set_openvino_metadata
        path = self.dir / f"{Path(self.src).stem}.xml"
        m0 = self.model.clone()
        set_openvino_metadata(m0, self.meta if self.meta is not None else read_metadata(self.src))
        self.ov.save_model(m0, str(path), compress_to_fp16=False)
        return path

    def quantize(self, float_blocks: Sequence[str] = (), path: Path | None = None):
        """Quantize; returns (written path, model object: ModelProto / openvino.Model)."""
        from ..metadata import set_onnx_metadata, set_openvino_metadata
        self.runs += 1
        nodes = self.float_nodes(float_blocks)
        if self.fmt == "openvino":
            q = quantize_openvino(self.model.clone(), self.calib, nodes)
            path = path or self.dir / f"q{self.runs}.xml"
            self.ov.save_model(q, str(path), compress_to_fp16=False)
            if self.meta is not None:
                # saved again with the metadata rather than once with it: save_model advances
                # the process-wide counter OpenVINO names unnamed nodes by, so this keeps the
                # files exported later in the same process byte-identical to earlier releases
                set_openvino_metadata(q, self.meta)
                self.ov.save_model(q, str(path), compress_to_fp16=False)
            return path, q
        path = path or self.dir / f"q{self.runs}.onnx"
        q = quantize_onnx(self.src, path, self.calib, nodes,
                          progress=self.progress and self.runs == 1,
                          activations=self.activations)
        if self.meta is not None:
            set_onnx_metadata(q, self.meta)
            path.write_bytes(q.SerializeToString())
        return path, q


# ----------------------------------------------------------------------------- writing

def write_int8(model: nn.Module, path: Path, fmt: str, calib: Calibration, workdir: Path, *,
               float_blocks: Sequence[str] = (), extra_settings: dict | None = None,
               activations: str = "s8", progress: bool = True, **onnx_kwargs
               ) -> ExportMetadata:
    """Export ``model`` (``onnx_kwargs`` as for :func:`export_onnx`), quantize it with
    ``float_blocks`` kept float and write it to ``path`` (an OpenVINO IR pair or an ONNX
    file) with its export metadata, which is returned; the settings are recorded there under
    ``quantization`` (``extra_settings`` appended: partial mode's held-out figures).
    An ONNX end-to-end graph gets its NMS after quantization.  ``workdir``: temporaries."""
    from ..metadata import set_onnx_metadata
    from .onnx import add_end2end_nms, to_onnx

    e2e_after = fmt == "onnx" and onnx_kwargs.get("mode", "raw") == "end2end"
    kw = dict(onnx_kwargs)
    if e2e_after:
        kw["mode"] = "raw"
    src, meta = to_onnx(model, workdir / "fp32.onnx", **kw)
    target = QuantTarget(fmt, src, calib, len(model.head.strides), workdir, progress,
                         activations)
    unknown = [b for b in float_blocks if b not in target.blocks]
    if unknown:
        raise QuantizeError(f"blocks {unknown} of the search graph are not in the export")
    settings = {"dtype": "int8", **_tool_settings(fmt, activations),
                "calibration": calib.settings(),
                "float_head": {"nodes": len(target.head.nodes), "ops": target.head.ops,
                               "stops_at": list(target.head.convs)},
                "float_blocks": list(float_blocks), "num_blocks": len(target.blocks),
                **(extra_settings or {})}
    if fmt == "openvino":
        _, q = target.quantize(float_blocks, workdir / "final.xml")
        from .openvino import write_ir_pair
        return write_ir_pair(target.ov, q, path,
                             meta.replace(openvino_weights="int8", quantization=settings))
    import onnx
    _, q = target.quantize(float_blocks, workdir / "final.onnx")
    if e2e_after:
        conf = float(model.cfg.head.conf_thresh if onnx_kwargs.get("conf_thresh") is None
                     else onnx_kwargs["conf_thresh"])
        iou = float(model.cfg.head.iou_thresh if onnx_kwargs.get("iou_thresh") is None
                    else onnx_kwargs["iou_thresh"])
        max_det = int(onnx_kwargs.get("max_det", 100))
        q = add_end2end_nms(q, max_det, iou, conf)
        meta = meta.replace(mode="end2end", max_det=max_det, end2end_conf_thresh=conf,
                            end2end_iou_thresh=iou,
                            outputs=("num_dets", "det_boxes", "det_scores", "det_labels"))
    meta = meta.replace(quantization=settings)
    set_onnx_metadata(q, meta)
    onnx.checker.check_model(q)
    atomic_write_bytes(path, q.SerializeToString())
    return meta


# Deprecated: one release only.  The INT8 export with its held-out score moved up to
# damoyolo.workflows.int8; these names import from there with a DeprecationWarning.  The
# module is named as a string (importlib) so that this shim is not an import from the
# export floor up to workflows; nothing else in the package may do this.
_MOVED = {"export_int8": "damoyolo.workflows.int8", "Int8Result": "damoyolo.workflows.int8",
          "write_sensitivity_chart": "damoyolo.workflows.int8"}


__getattr__ = moved(__name__, _MOVED)
