"""Export metadata: one typed value (:class:`ExportMetadata`) every exported model carries,
written and read here.

``damoyolo.export`` writes it, ``damoyolo.infer`` reads it; this module imports neither, so
a deployment-only runtime (onnxruntime, OpenVINO or TensorRT, no exporter) reads its models
without importing ``torch.onnx`` or the export code.

Where it lives (as one JSON object, :meth:`ExportMetadata.to_dict`):

- ONNX: ``metadata_props`` key ``damoyolo``; ``names`` and ``imgsz`` are repeated as plain
  keys for other tools;
- OpenVINO IR: the runtime info key ``damoyolo`` (a JSON string);
- TensorRT: ``<engine>.json`` beside the engine.

Keys (the fields of :class:`ExportMetadata`): ``format`` (``"damoyolo-export"``),
``damoyolo_version``, ``preset``, ``class_names``, ``category_ids``, ``input_size`` [H, W],
``preprocessing``, ``mode`` (``raw`` / ``raw_heads`` / ``end2end``), ``reg_max``,
``strides``, ``conf_thresh``, ``iou_thresh``, plus what the exporter adds (``opset``,
``dynamic_batch``, ``outputs``, ``network_dtype``, ``max_det`` and the ``end2end_*``
thresholds, ``batch``, ``openvino_weights``, ``weights_sha256``, ``tensorrt_precision``,
``engine_sha256``, ``quantization``) and ``model``: the model's
:class:`~damoyolo.config.ModelConfig` as plain data (:func:`damoyolo.config.to_dict`), so
the architecture (a searched backbone's structure included) travels with the export.

Both ways compatible: files exported before ``model`` was written still read (``model`` is
then ``None``), and new files keep every key older readers use.  Keys this version does not
know are kept, unread, in :attr:`ExportMetadata.extra` and written back.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ._version import __version__
from .config import ModelConfig, from_dict, to_dict
from .errors import DamoyoloError

__all__ = ["FORMAT", "MODES", "MetadataError", "ExportMetadata", "export_metadata",
           "parse_metadata", "check_pair", "file_sha256", "set_onnx_metadata", "read_metadata",
           "set_openvino_metadata", "read_openvino_metadata", "tensorrt_metadata_path",
           "write_tensorrt_metadata", "read_tensorrt_metadata"]

FORMAT = "damoyolo-export"
KEY = "damoyolo"
MODES = ("raw", "raw_heads", "end2end")
"""The output layouts of an export (:mod:`damoyolo.export.onnx`)."""

PREPROCESSING = {"channel_order": "RGB", "resize": "straight to input_size (no keep ratio), "
                 "cv2 INTER_LINEAR", "dtype": "float32", "range": [0, 255], "mean": None,
                 "std": None, "layout": "NCHW"}
"""What every export expects of its input (:mod:`damoyolo.preprocess`)."""


class MetadataError(DamoyoloError, ValueError):
    """An exported file carries no (or unreadable) damoyolo metadata."""


# the keys a reader relies on, with their JSON types
_REQUIRED = {"class_names": list, "input_size": list, "mode": str, "reg_max": int,
             "strides": list, "conf_thresh": (int, float), "iou_thresh": (int, float)}
# the other keys, each optional (absent or null in older files), with their JSON types
_OPTIONAL = {"format": str, "damoyolo_version": str, "preset": str, "category_ids": list,
             "preprocessing": dict, "opset": int, "dynamic_batch": bool, "outputs": list,
             "network_dtype": str, "max_det": int, "end2end_conf_thresh": (int, float),
             "end2end_iou_thresh": (int, float), "batch": int, "openvino_weights": str,
             "weights_sha256": str, "tensorrt_precision": str, "engine_sha256": str,
             "quantization": dict, "model": dict}
# written even when None (every file has had them)
_ALWAYS = ("format", "damoyolo_version", "preset", "class_names", "category_ids",
           "input_size", "preprocessing", "mode", "reg_max", "strides", "conf_thresh",
           "iou_thresh")


@dataclass(frozen=True, eq=False)
class ExportMetadata(Mapping):
    """What an exported model says about itself (module docstring): typed fields, read as
    attributes (``meta.input_size``, ``meta.model``).

    Sequences are tuples; ``model`` is the model's config (``None`` in files exported before
    it was written); ``extra`` holds keys this version does not know.  Variants with
    :meth:`replace`.  The value also reads as a read-only mapping of its JSON form
    (``meta["input_size"] == [H, W]``, ``{**meta}``, equality with such a dict), as the dict
    it replaces did.
    """

    class_names: tuple[str, ...]
    input_size: tuple[int, int]  # (H, W)
    mode: str
    reg_max: int
    strides: tuple[int, ...]
    conf_thresh: float
    iou_thresh: float
    format: str | None = FORMAT
    damoyolo_version: str | None = __version__
    preset: str | None = None
    category_ids: tuple[int, ...] | None = None
    preprocessing: dict | None = None
    opset: int | None = None
    dynamic_batch: bool | None = None
    outputs: tuple[str, ...] | None = None
    network_dtype: str | None = None
    max_det: int | None = None
    end2end_conf_thresh: float | None = None
    end2end_iou_thresh: float | None = None
    batch: int | None = None
    openvino_weights: str | None = None
    weights_sha256: str | None = None
    tensorrt_precision: str | None = None
    engine_sha256: str | None = None
    quantization: dict | None = None
    model: ModelConfig | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)
        for name in ("class_names", "input_size", "strides", "category_ids", "outputs"):
            v = getattr(self, name)
            if v is not None:
                put(name, tuple(v))
        for name in ("conf_thresh", "iou_thresh", "end2end_conf_thresh", "end2end_iou_thresh"):
            v = getattr(self, name)
            if v is not None:
                put(name, float(v))
        if isinstance(self.model, dict):
            put("model", from_dict(ModelConfig, self.model))

    def replace(self, **changes: Any) -> "ExportMetadata":
        """A copy with ``changes`` (fields; an unknown name goes to :attr:`extra`)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = {k: changes.pop(k) for k in list(changes) if k not in known}
        if unknown:
            changes["extra"] = {**self.extra, **unknown}
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ the JSON form
    def to_dict(self) -> dict:
        """The JSON object written to a file (a new one each call): the keys every file has
        had, in their old order, then the optional keys that are set, then :attr:`extra`."""
        return json.loads(self.to_json())

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self._json, indent=indent)

    @cached_property
    def _json(self) -> dict:
        names = [f.name for f in dataclasses.fields(self) if f.name != "extra"]
        out = {}
        for name in sorted(names, key=lambda n: _ALWAYS.index(n) if n in _ALWAYS else 99):
            v = getattr(self, name)
            if v is not None or name in _ALWAYS:
                out[name] = to_dict(v)
        for k, v in self.extra.items():
            out.setdefault(k, v)
        return json.loads(json.dumps(out))  # plain JSON values, as a reader gets them

    # the read-only mapping of the JSON form
    def __getitem__(self, key: str) -> Any:
        return self._json[key]

    def __iter__(self):
        return iter(self._json)

    def __len__(self) -> int:
        return len(self._json)

    @classmethod
    def from_dict(cls, data: Any, where: str = "metadata") -> "ExportMetadata":
        """Check a parsed JSON object and build the value; :class:`MetadataError` naming
        ``where`` and the problem when it is not an object, or lacks or mistypes a key."""
        if isinstance(data, ExportMetadata):
            return data
        if not isinstance(data, Mapping):
            raise MetadataError(f"{where}: damoyolo metadata is a JSON {type(data).__name__}, "
                                f"not an object")
        data = dict(data)
        for key, kind in _REQUIRED.items():
            if key not in data:
                raise MetadataError(f"{where}: damoyolo metadata lacks {key!r}; export the "
                                    f"model again")
            _check_type(data, key, kind, where)
        for key, kind in _OPTIONAL.items():
            if data.get(key) is not None:
                _check_type(data, key, kind, where)
        hw = data["input_size"]
        if len(hw) != 2 or not all(_is_int(v) and 0 < v <= 16384 for v in hw):
            raise MetadataError(f"{where}: damoyolo metadata input_size {hw!r} is not [H, W] "
                                f"of positive integers")
        for key, kind in (("class_names", str), ("outputs", str), ("strides", int),
                          ("category_ids", int)):
            if data.get(key) is not None and not all(
                    isinstance(v, kind) and not isinstance(v, bool) for v in data[key]):
                raise MetadataError(f"{where}: damoyolo metadata {key} must be "
                                    f"{'strings' if kind is str else 'integers'}")
        if data["mode"] not in MODES:
            raise MetadataError(f"{where}: damoyolo metadata mode {data['mode']!r} is not one "
                                f"of {', '.join(MODES)}")
        if data["mode"] == "end2end":
            for key in ("max_det", "end2end_conf_thresh", "end2end_iou_thresh"):
                if data.get(key) is None:
                    raise MetadataError(f"{where}: damoyolo metadata of an end-to-end export "
                                        f"lacks {key!r}; export the model again")
        for key in ("batch", "max_det"):
            if data.get(key) is not None and data[key] < 1:
                raise MetadataError(f"{where}: damoyolo metadata {key} {data[key]} is not "
                                    f"positive")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        fields = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        if fields.get("model") is not None:
            fields["model"] = _model_config(fields["model"], data, where)
        return cls(**fields, extra=extra)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_type(data: dict, key: str, kind, where: str) -> None:
    v = data[key]
    if not isinstance(v, kind) or (isinstance(v, bool) and kind is not bool):
        raise MetadataError(f"{where}: damoyolo metadata {key!r} is {type(v).__name__}, "
                            f"expected {_kind(kind)}")


def _model_config(raw: dict, data: dict, where: str) -> ModelConfig:
    """The ``model`` entry as a :class:`ModelConfig` that agrees with the export's keys."""
    from .config import ConfigError
    try:
        cfg = from_dict(ModelConfig, raw, prefix="model.")
    except (ConfigError, TypeError, ValueError) as e:
        raise MetadataError(f"{where}: damoyolo metadata 'model' is not a model config "
                            f"({e})") from None
    h = cfg.head
    if (h.num_classes != len(data["class_names"]) or h.reg_max != data["reg_max"]
            or list(h.strides) != list(data["strides"])
            or (data.get("preset") is not None and cfg.name != data["preset"])):
        raise MetadataError(f"{where}: damoyolo metadata 'model' disagrees with its "
                            f"class_names, reg_max, strides or preset; export the model again")
    return cfg


def export_metadata(model, input_hw: tuple[int, int], mode: str, **extra) -> ExportMetadata:
    """The metadata of ``model`` (a :class:`damoyolo.DAMOYOLO`) exported at ``input_hw`` in
    ``mode``, with its config; ``extra`` keys are added (or replace the defaults)."""
    head = model.head
    names = model.class_names or [str(i) for i in range(head.num_classes)]
    meta = ExportMetadata(
        preset=model.cfg.name, class_names=tuple(names),
        category_ids=getattr(model, "category_ids", None),
        input_size=(int(input_hw[0]), int(input_hw[1])),
        preprocessing=json.loads(json.dumps(PREPROCESSING)),
        mode=mode, reg_max=int(head.reg_max), strides=tuple(head.strides),
        conf_thresh=float(model.cfg.head.conf_thresh),
        iou_thresh=float(model.cfg.head.iou_thresh), model=model.cfg)
    return meta.replace(**extra) if extra else meta


def parse_metadata(text: str | bytes, where: str) -> ExportMetadata:
    """Parse and check a metadata JSON object; :class:`MetadataError` naming ``where`` and the
    problem when it is not JSON, not an object, or lacks or mistypes a key readers use."""
    try:
        meta = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise MetadataError(f"{where}: damoyolo metadata is not valid JSON ({e})") from None
    return ExportMetadata.from_dict(meta, where)


def _kind(kind) -> str:
    return " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__


def file_sha256(path: str | Path) -> str:
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_pair(meta: ExportMetadata, key: str, path: Path, what: str) -> None:
    """When ``meta``'s field ``key`` holds a SHA-256, the file ``path`` must have it: an export
    and its metadata (or an IR's ``.xml`` and ``.bin``) written by different exports do not
    load."""
    want = getattr(meta, key)
    if not want:
        return
    if not path.is_file():
        raise MetadataError(f"{path}: missing; {what} was exported with it")
    if file_sha256(path) != want:
        raise MetadataError(f"{path}: does not belong to {what} (its checksum differs from the "
                            f"one recorded at export: an interrupted or mixed export); export "
                            f"the model again")


def _as_metadata(meta: ExportMetadata | Mapping) -> ExportMetadata:
    """``meta`` itself, or a mapping checked as :meth:`ExportMetadata.from_dict` does."""
    return ExportMetadata.from_dict(meta, "metadata to write")


def set_onnx_metadata(onnx_model, meta: ExportMetadata | Mapping) -> None:
    """Store ``meta`` in an ONNX ``ModelProto`` (replacing its ``metadata_props``)."""
    meta = _as_metadata(meta)
    del onnx_model.metadata_props[:]
    for k, v in ((KEY, meta.to_json()), ("names", json.dumps(list(meta.class_names))),
                 ("imgsz", json.dumps(list(meta.input_size)))):
        e = onnx_model.metadata_props.add()
        e.key, e.value = k, v
    onnx_model.producer_name = "damoyolo"
    onnx_model.producer_version = meta.damoyolo_version or __version__


def read_metadata(path: str | Path) -> ExportMetadata:
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


def set_openvino_metadata(ov_model, meta: ExportMetadata | Mapping) -> None:
    """Store ``meta`` in an ``openvino.Model``'s runtime info."""
    ov_model.set_rt_info(_as_metadata(meta).to_json(), [KEY])


def read_openvino_metadata(ov_model, path: str | Path | None = None) -> ExportMetadata:
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


def write_tensorrt_metadata(engine: str | Path, meta: ExportMetadata | Mapping) -> Path:
    """Write ``meta`` beside ``engine`` (atomically); returns the JSON path."""
    from .outputs import atomic_write_text
    p = tensorrt_metadata_path(engine)
    atomic_write_text(p, _as_metadata(meta).to_json(indent=1))
    return p


def read_tensorrt_metadata(engine: str | Path) -> ExportMetadata:
    """The metadata of a TensorRT engine (its ``.json``; error if missing)."""
    p = tensorrt_metadata_path(engine)
    if not p.is_file():
        raise MetadataError(f"{p}: missing metadata file written by damoyolo export")
    meta = parse_metadata(p.read_bytes(), str(p))
    check_pair(meta, "engine_sha256", Path(engine), str(p))
    return meta
