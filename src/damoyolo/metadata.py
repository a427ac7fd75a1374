"""Export metadata: the JSON object every exported model carries, written and read here.

``damoyolo.export`` writes it, ``damoyolo.infer`` reads it; this module imports neither, so
a deployment-only runtime (onnxruntime, OpenVINO or TensorRT, no exporter) reads its models
without importing ``torch.onnx`` or the export code.

Where it lives:

- ONNX: ``metadata_props`` key ``damoyolo`` (the JSON object); ``names`` and ``imgsz`` are
  repeated as plain keys for other tools;
- OpenVINO IR: the runtime info key ``damoyolo`` (a JSON string);
- TensorRT: ``<engine>.json`` beside the engine.

Keys (:func:`export_metadata`): ``format`` (``"damoyolo-export"``), ``damoyolo_version``,
``preset``, ``class_names``, ``category_ids``, ``input_size`` [H, W], ``preprocessing``,
``mode`` (``raw`` / ``raw_heads`` / ``end2end``), ``reg_max``, ``strides``, ``conf_thresh``,
``iou_thresh``, plus what the exporter adds (``opset``, ``dynamic_batch``, ``outputs``,
``batch``, ``max_det`` and the ``end2end_*`` thresholds, ``network_dtype``,
``openvino_weights``, ``tensorrt_precision``, ``quantization``).
"""

from __future__ import annotations

import json
from pathlib import Path

from ._version import __version__
from .errors import DamoyoloError

__all__ = ["FORMAT", "MetadataError", "export_metadata", "parse_metadata", "check_pair",
           "file_sha256", "set_onnx_metadata", "read_metadata",
           "set_openvino_metadata", "read_openvino_metadata", "tensorrt_metadata_path",
           "write_tensorrt_metadata", "read_tensorrt_metadata"]

FORMAT = "damoyolo-export"
KEY = "damoyolo"


class MetadataError(DamoyoloError, ValueError):
    """An exported file carries no (or unreadable) damoyolo metadata."""


def export_metadata(model, input_hw: tuple[int, int], mode: str, **extra) -> dict:
    """The metadata of ``model`` (a :class:`damoyolo.DAMOYOLO`) exported at ``input_hw`` in
    ``mode``; ``extra`` keys are added (or replace the defaults)."""
    head = model.head
    names = model.class_names or [str(i) for i in range(head.num_classes)]
    meta = {
        "format": FORMAT, "damoyolo_version": __version__,
        "preset": model.cfg.name, "class_names": list(names),
        "category_ids": getattr(model, "category_ids", None),
        "input_size": [int(input_hw[0]), int(input_hw[1])],
        "preprocessing": {"channel_order": "RGB", "resize": "straight to input_size (no keep "
                          "ratio), cv2 INTER_LINEAR", "dtype": "float32", "range": [0, 255],
                          "mean": None, "std": None, "layout": "NCHW"},
        "mode": mode, "reg_max": int(head.reg_max), "strides": list(head.strides),
        "conf_thresh": float(model.cfg.head.conf_thresh),
        "iou_thresh": float(model.cfg.head.iou_thresh),
    }
    meta.update(extra)
    return meta


# the keys a reader relies on, with their JSON types
_REQUIRED = {"class_names": list, "input_size": list, "mode": str, "reg_max": int,
             "strides": list, "conf_thresh": (int, float), "iou_thresh": (int, float)}


def parse_metadata(text: str | bytes, where: str) -> dict:
    """Parse and check a metadata JSON object; :class:`MetadataError` naming ``where`` and the
    problem when it is not JSON, not an object, or lacks or mistypes a key readers use."""
    try:
        meta = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise MetadataError(f"{where}: damoyolo metadata is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise MetadataError(f"{where}: damoyolo metadata is a JSON {type(meta).__name__}, not "
                            f"an object")
    for key, kind in _REQUIRED.items():
        if key not in meta:
            raise MetadataError(f"{where}: damoyolo metadata lacks {key!r}; export the model "
                                f"again")
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise MetadataError(f"{where}: damoyolo metadata {key!r} is "
                                f"{type(meta[key]).__name__}, expected {_kind(kind)}")
    hw = meta["input_size"]
    if len(hw) != 2 or not all(isinstance(v, int) and 0 < v <= 16384 for v in hw):
        raise MetadataError(f"{where}: damoyolo metadata input_size {hw!r} is not [H, W] of "
                            f"positive integers")
    if not all(isinstance(n, str) for n in meta["class_names"]):
        raise MetadataError(f"{where}: damoyolo metadata class_names must be strings")
    return meta


def _kind(kind) -> str:
    return " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__


def file_sha256(path: str | Path) -> str:
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_pair(meta: dict, key: str, path: Path, what: str) -> None:
    """When ``meta[key]`` holds a SHA-256, the file ``path`` must have it: an export and its
    metadata (or an IR's ``.xml`` and ``.bin``) written by different exports do not load."""
    want = meta.get(key)
    if not want:
        return
    if not path.is_file():
        raise MetadataError(f"{path}: missing; {what} was exported with it")
    if file_sha256(path) != want:
        raise MetadataError(f"{path}: does not belong to {what} (its checksum differs from the "
                            f"one recorded at export: an interrupted or mixed export); export "
                            f"the model again")


def set_onnx_metadata(onnx_model, meta: dict) -> None:
    """Store ``meta`` in an ONNX ``ModelProto`` (replacing its ``metadata_props``)."""
    del onnx_model.metadata_props[:]
    for k, v in ((KEY, json.dumps(meta)), ("names", json.dumps(meta["class_names"])),
                 ("imgsz", json.dumps(meta["input_size"]))):
        e = onnx_model.metadata_props.add()
        e.key, e.value = k, v
    onnx_model.producer_name = "damoyolo"
    onnx_model.producer_version = meta["damoyolo_version"]


def read_metadata(path: str | Path) -> dict:
    """The metadata of an exported file: ONNX (``.onnx``, and any other suffix), OpenVINO
    (``.xml``) or TensorRT (``.engine``/``.plan``, from its ``.json``)."""
    suffix = Path(str(path)).suffix.lower()
    if suffix in (".engine", ".plan"):
        return read_tensorrt_metadata(path)
    if suffix == ".xml":
        from ._optional import import_optional
        ov = import_optional("openvino", "reading an OpenVINO model")
        return read_openvino_metadata(ov.Core().read_model(str(path)), path)
    from ._optional import import_optional
    onnx = import_optional("onnx", "reading an ONNX file")
    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises its own DecodeError
        raise MetadataError(f"{path}: not a readable ONNX file ({type(e).__name__})") from None
    if _uses_external_data(onnx, m):
        raise MetadataError(f"{path}: the ONNX file refers to external data files; damoyolo "
                            f"exports keep their weights inside, and a crafted reference can "
                            f"point outside the model's folder, so the file is refused")
    for e in m.metadata_props:
        if e.key == KEY:
            return parse_metadata(e.value, str(path))
    raise MetadataError(f"{path}: no damoyolo metadata (not exported by damoyolo?)")


def _uses_external_data(onnx, model) -> bool:
    """Whether any tensor of the model (initializers, sparse initializers, constant
    attributes, subgraphs, functions) keeps its data in an external file."""
    ext = onnx.TensorProto.EXTERNAL

    def tensors(ts) -> bool:
        return any(t.data_location == ext for t in ts)

    def sparse(ss) -> bool:
        return any(tensors((s.values, s.indices)) for s in ss)

    def nodes(ns) -> bool:
        for node in ns:
            for a in node.attribute:
                if (a.HasField("t") and tensors((a.t,))) or tensors(a.tensors):
                    return True
                if (a.HasField("sparse_tensor") and sparse((a.sparse_tensor,))) \
                        or sparse(a.sparse_tensors):
                    return True
                if (a.HasField("g") and graph(a.g)) or any(graph(sg) for sg in a.graphs):
                    return True
        return False

    def graph(g) -> bool:
        return tensors(g.initializer) or sparse(g.sparse_initializer) or nodes(g.node)

    return graph(model.graph) or any(nodes(f.node) for f in model.functions)


def set_openvino_metadata(ov_model, meta: dict) -> None:
    """Store ``meta`` in an ``openvino.Model``'s runtime info."""
    ov_model.set_rt_info(json.dumps(meta), [KEY])


def read_openvino_metadata(ov_model, path: str | Path | None = None) -> dict:
    """The metadata of a read ``openvino.Model`` (error if absent)."""
    if not ov_model.has_rt_info([KEY]):
        where = f"{path}: " if path is not None else ""
        raise MetadataError(f"{where}OpenVINO model has no damoyolo metadata (not exported by "
                            "damoyolo?)")
    where = str(path) if path is not None else "OpenVINO model"
    meta = parse_metadata(ov_model.get_rt_info([KEY]).astype(str), where)
    if path is not None:
        check_pair(meta, "weights_sha256", Path(path).with_suffix(".bin"), str(path))
    return meta


def tensorrt_metadata_path(engine: str | Path) -> Path:
    """``<engine>.json``: where a TensorRT engine's metadata lives."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def write_tensorrt_metadata(engine: str | Path, meta: dict) -> Path:
    """Write ``meta`` beside ``engine`` (atomically); returns the JSON path."""
    from .outputs import atomic_write_text
    p = tensorrt_metadata_path(engine)
    atomic_write_text(p, json.dumps(meta, indent=1))
    return p


def read_tensorrt_metadata(engine: str | Path) -> dict:
    """The metadata of a TensorRT engine (its ``.json``; error if missing)."""
    p = tensorrt_metadata_path(engine)
    if not p.is_file():
        raise MetadataError(f"{p}: missing metadata file written by damoyolo export")
    meta = parse_metadata(p.read_bytes(), str(p))
    check_pair(meta, "engine_sha256", Path(engine), str(p))
    return meta
