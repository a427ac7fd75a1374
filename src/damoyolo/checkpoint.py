"""Self-describing checkpoints, atomic writes, and loading of official checkpoints.

Our format is a dict::

    {"format": "damoyolo", "version": "0.1.0",
     "model_config": {...},          # ModelConfig as plain data
     "class_names": [...],           # contiguous label -> name
     "category_ids": [...] | None,   # contiguous label -> dataset category id
     "model": state_dict,            # training-structure weights
     ...}                            # training extras (ema, optimizer, epoch, ...)

``load_model`` also accepts official release checkpoints (``{'model': sd}`` or a bare
state dict, with or without ``module.`` prefixes); their architecture must be named
with ``model=``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ._version import __version__
from .classes import COCO_CLASSES
from .config import ModelConfig, from_dict, to_dict
from .models.detector import DAMOYOLO
from .models.official import OfficialCheckpointError, convert_official_state_dict, \
    strip_module_prefix
from .presets import get_preset
from .errors import DamoyoloError

__all__ = ["FORMAT", "CheckpointError", "ArchitectureUnknownError", "atomic_save",
           "checkpoint_header", "save_model", "read_checkpoint", "load_model",
           "is_official_state_dict", "to_plain_data", "check_model_config"]

FORMAT = "damoyolo"


class CheckpointError(DamoyoloError, ValueError):
    """A checkpoint file could not be read or does not fit."""


class ArchitectureUnknownError(CheckpointError):
    """An official checkpoint was loaded without naming its architecture (``model=``)."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a unique temporary file in the same folder, fsync, then rename over
    ``path`` (:func:`damoyolo.outputs.atomic_output`)."""
    from .outputs import atomic_output
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())


def checkpoint_header(model: DAMOYOLO, category_ids: list[int] | None = None) -> dict[str, Any]:
    """What makes a checkpoint describe itself: format, version, model config, class names,
    category ids and the model's weights.  Training checkpoints add their state to it.

    Everything comes from the model: its config, ``model.class_names`` and
    ``model.category_ids`` (contiguous label -> dataset category id; set by
    :func:`load_model`, :meth:`~damoyolo.DAMOYOLO.rename_classes` or the caller), so a
    loaded model saved again keeps them.

    category_ids: deprecated (one release); ids given here are set on the model first
    (``model.category_ids``), then written, as before.
    """
    if category_ids is not None:
        import warnings
        warnings.warn("checkpoint_header(model, category_ids): the ids come from the model; "
                      "set model.category_ids instead (the argument goes in the next "
                      "release)", DeprecationWarning, stacklevel=2)
        _set_category_ids(model, category_ids)
    ids = getattr(model, "category_ids", None)
    return {"format": FORMAT, "version": __version__, "model_config": to_dict(model.cfg),
            "class_names": model.class_names,
            "category_ids": None if ids is None else [int(c) for c in ids],
            "model": model.state_dict()}


def _set_category_ids(model: DAMOYOLO, category_ids: list[int] | None) -> None:
    """Ids given by a caller become the model's (``None``: the model keeps its own)."""
    if category_ids is not None:
        model.category_ids = [int(c) for c in category_ids]


def save_model(model: DAMOYOLO, path: str | Path, category_ids: list[int] | None = None,
               **extra: Any) -> None:
    """Write a self-describing checkpoint (atomically) of ``model``
    (:func:`checkpoint_header`); ``category_ids``, when given, are set on the model first
    (``model.category_ids``), otherwise the model's own are written."""
    _set_category_ids(model, category_ids)
    atomic_save({**checkpoint_header(model), **extra}, path)


SAFE_TORCH = (2, 10)  # weights_only loading: bypass to code execution up to 2.5.1
# (CVE-2025-32434), memory corruption in its unpickler before 2.10 (CVE-2026-24747)


def check_safe_torch(version: str | None = None) -> None:
    """Refuse to read checkpoints with a torch whose ``weights_only`` loading is not safe."""
    import re
    v = version or torch.__version__
    m = re.match(r"(\d+)\.(\d+)", v)
    if m and (int(m.group(1)), int(m.group(2))) < SAFE_TORCH:
        raise CheckpointError(f"torch {v} cannot read checkpoints safely (its weights_only "
                              f"loading can run code from a crafted file: CVE-2025-32434, "
                              f"CVE-2026-24747); install torch >= "
                              f"{'.'.join(map(str, SAFE_TORCH))}")


def read_checkpoint(path: str | Path, trust_code: bool = False) -> dict:
    """Load a checkpoint file onto the CPU as data, with a clear error when it is not one.

    A checkpoint is untrusted data: it is read with ``torch.load(weights_only=True)``, which
    only rebuilds tensors and plain values (numbers, strings, lists, tuples, dicts) and never
    runs code from the file.  A file that needs code to unpickle is refused, naming the
    object it asked for.  ``trust_code=True`` lifts that rule, for a file you trust; use it
    once, through ``damoyolo convert --trust-code OLD NEW``, to rewrite such a file as plain
    data.
    """
    import pickle
    p = Path(path)
    check_safe_torch()
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=not trust_code)
    except pickle.UnpicklingError as e:
        what = next((ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln), None)
        if what is None:  # not a pickle of plain data at all (garbage, truncated, ...)
            detail = next((ln.strip() for ln in str(e).splitlines() if "Unsupported" in ln),
                          str(e).splitlines()[0])
            raise CheckpointError(f"{p}: not a readable checkpoint ({detail})") from None
        raise CheckpointError(
            f"{p}: refused: loading it would run code from the file ({what}); checkpoints are "
            f"read as data only. If you trust this file (e.g. a damoyolo checkpoint written "
            f"by version 0.1), rewrite it once as plain data: damoyolo convert --trust-code "
            f"{p} NEW.pt") from None
    except Exception as e:  # truncated / not a torch file
        raise CheckpointError(f"{p}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p}: expected a dict, got {type(obj).__name__}")
    return obj


def is_official_state_dict(sd: dict) -> bool:
    keys = list(strip_module_prefix(sd))
    return bool(keys) and all(isinstance(k, str) for k in keys) and any(
        k.startswith(("backbone.block_list", "backbone.csp_stage")) for k in keys)


def to_plain_data(obj: Any, where: str = "checkpoint") -> Any:
    """``obj`` with NumPy arrays and scalars turned into tensors and Python numbers, so that it
    loads under ``torch.load(weights_only=True)``; any other object is an error."""
    import collections

    import numpy as np
    if isinstance(obj, (torch.Tensor, str, bytes, int, float, bool, type(None), torch.Size)):
        return obj
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, to_plain_data(v, f"{where}[{k!r}]"))
                                       for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: to_plain_data(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        out = [to_plain_data(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return out if isinstance(obj, list) else tuple(out)
    raise CheckpointError(f"{where}: {type(obj).__module__}.{type(obj).__name__} is not plain "
                          f"data (tensors, numbers, strings, lists, dicts)")


# bounds of a stored model config, far above any published or sensible model: a crafted
# checkpoint cannot make the loader allocate without limit
_BOUNDS = {"num_classes": 100_000, "reg_max": 256, "input_side": 16384, "channels": 8192,
           "neck_depth": 16.0, "hidden_ratio": 16.0, "kernel": 15, "stride": 128,
           "max_det": 100_000}


def stored_state_dict(obj: dict, path) -> Mapping:
    """The weights of our checkpoint ``obj``: its ``'ema'`` state dict when it holds one, else
    its ``'model'`` (either may be wrapped as ``{'state_dict': ...}``).  A checkpoint with
    neither, or whose entry is not a state dict, is a :class:`CheckpointError` naming
    ``path``; an ``'ema'`` of ``None`` (trained without EMA) means "use ``'model'``"."""
    for key in ("ema", "model"):
        sd = obj.get(key)
        if sd is None:
            continue
        if isinstance(sd, Mapping) and "state_dict" in sd:
            sd = sd["state_dict"]
        if not isinstance(sd, Mapping):
            raise CheckpointError(f"{path}: '{key}' is a {type(sd).__name__}, not a state dict")
        if key == "ema" and not sd:  # an empty EMA entry: the model's weights stand
            continue
        bad = next((k for k in sd if not isinstance(k, str)), None)
        if bad is not None:
            raise CheckpointError(f"{path}: '{key}' has a key {bad!r} that is not a parameter "
                                  f"name; not a state dict")
        return sd
    raise CheckpointError(f"{path}: a damoyolo checkpoint without weights ('model')")


def stored_category_ids(obj: dict, path, num_classes: int) -> list[int] | None:
    """The ``'category_ids'`` of our checkpoint ``obj``: ``None`` or a list of exactly
    ``num_classes`` integers (label -> dataset category id); anything else is a
    :class:`CheckpointError` naming ``path``."""
    ids = obj.get("category_ids")
    if ids is None:
        return None
    if not isinstance(ids, (list, tuple)) or len(ids) != num_classes or any(
            isinstance(c, bool) or not isinstance(c, int) for c in ids):
        got = repr(ids)
        got = got if len(got) <= 60 else got[:57] + "..."
        raise CheckpointError(f"{path}: 'category_ids' must be none or a list of {num_classes} "
                              f"integers (one per class), got {got}")
    return [int(c) for c in ids]


def stored_model_config(obj: dict, path) -> ModelConfig:
    """The model config stored in our checkpoint ``obj``, checked before anything is built:
    present, well-formed, within :data:`_BOUNDS`, and with its backbone structure inline or
    packaged (a checkpoint never names a file to read)."""
    from .config import ConfigError
    raw = obj.get("model_config")
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: a damoyolo checkpoint without its model config "
                              f"('model_config' is {type(raw).__name__})")
    stored_state_dict(obj, path)  # weights present and a state dict, before anything is built
    try:
        cfg = from_dict(ModelConfig, raw)
    except (ConfigError, TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: bad model config: {e}") from None
    return check_model_config(cfg, path)


def check_model_config(cfg: ModelConfig, path, what: str = "a checkpoint") -> ModelConfig:
    """``cfg`` read from a file (``path``), checked before anything is built from it: within
    :data:`_BOUNDS`, and with its backbone structure inline or packaged (``what``, the file,
    never names a file to read); :class:`CheckpointError` naming ``path`` otherwise."""
    from .models.backbones.structure import StructureError, is_packaged_structure, \
        load_structure
    b, n, h = _BOUNDS, cfg.neck, cfg.head
    problems = []
    if not 1 <= h.num_classes <= b["num_classes"]:
        problems.append(f"head.num_classes={h.num_classes}")
    if not 1 <= h.reg_max <= b["reg_max"]:
        problems.append(f"head.reg_max={h.reg_max}")
    if not 1 <= h.kernel_size <= b["kernel"]:
        problems.append(f"head.kernel_size={h.kernel_size}")
    if not 1 <= h.max_det <= b["max_det"]:
        problems.append(f"head.max_det={h.max_det}")
    if not h.strides or any(not 1 <= s <= b["stride"] for s in h.strides):
        problems.append(f"head.strides={h.strides}")
    if len(cfg.input_size) != 2 or any(not 32 <= v <= b["input_side"] for v in cfg.input_size):
        problems.append(f"input_size={cfg.input_size}")
    if not n.out_channels or any(not 1 <= c <= b["channels"] for c in n.out_channels):
        problems.append(f"neck.out_channels={n.out_channels}")
    if not 0 < n.depth <= b["neck_depth"] or not 0 < n.hidden_ratio <= b["hidden_ratio"]:
        problems.append(f"neck.depth={n.depth}, neck.hidden_ratio={n.hidden_ratio}")
    if problems:
        raise CheckpointError(f"{path}: model config out of bounds: {', '.join(problems)}")
    st = str(cfg.backbone.structure)
    if not (st.lstrip().startswith(("{", "[")) or is_packaged_structure(st)):
        raise CheckpointError(f"{path}: backbone structure {st[:80]!r} is neither inline nor a "
                              f"packaged structure; {what} never names a file to read")
    try:
        load_structure(st)  # bounded parse before any layer is built
    except StructureError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return cfg


def load_model(path: str | Path, model: str | ModelConfig | None = None,
               device: str | torch.device = "cpu", class_names: list[str] | None = None,
               trust_code: bool = False) -> DAMOYOLO:
    """Load our checkpoint or an official DAMO-YOLO release checkpoint; eval mode.

    model: preset name / ModelConfig; required for official checkpoints, optional for
    ours (then it must agree with the stored architecture).  The file is read as data
    (see :func:`read_checkpoint`; ``trust_code`` only for a file you trust).
    """
    import dataclasses
    obj = read_checkpoint(path, trust_code=trust_code)
    if obj.get("format") == FORMAT:
        cfg = stored_model_config(obj, path)
        if model is not None:
            want = get_preset(model).model if isinstance(model, str) else model
            stored = dataclasses.replace(cfg, name=want.name, head=dataclasses.replace(
                cfg.head, num_classes=want.head.num_classes))
            if dataclasses.replace(want, input_size=cfg.input_size) != dataclasses.replace(
                    stored, input_size=cfg.input_size):
                raise CheckpointError(f"{path}: checkpoint holds {cfg.name}, not {want.name}")
        names = class_names or obj.get("class_names")
        if names is not None and (not isinstance(names, (list, tuple))
                                  or len(names) != cfg.head.num_classes):
            n = len(names) if isinstance(names, (list, tuple)) else repr(names)
            raise CheckpointError(f"{path}: {n} class names for the {cfg.head.num_classes} "
                                  f"classes of its model config")
        category_ids = stored_category_ids(obj, path, cfg.head.num_classes)
        sd = stored_state_dict(obj, path)
        net = DAMOYOLO(cfg, names)
        try:
            missing, unexpected = net.load_state_dict(strip_module_prefix(sd), strict=False)
        except RuntimeError as e:  # shapes that do not fit the stored config
            first = str(e).strip().splitlines()[1:2] or [str(e)[:200]]
            raise CheckpointError(f"{path}: weights do not fit the stored {cfg.name} config: "
                                  f"{first[0].strip()}") from None
        if missing or unexpected:
            raise CheckpointError(f"{path}: weights do not fit {cfg.name}: missing {missing[:8]}, "
                                  f"unexpected {unexpected[:8]}")
        net.category_ids = category_ids
        return net.to(device).eval()

    sd = obj["model"] if isinstance(obj.get("model"), dict) else obj
    if not is_official_state_dict(sd):
        raise CheckpointError(
            f"{path}: neither a damoyolo checkpoint nor an official DAMO-YOLO state dict")
    if model is None:
        raise ArchitectureUnknownError(f"{path}: official checkpoints do not record their "
                                       f"architecture; pass model=... (e.g. 'damoyolo-s')")
    cfg = get_preset(model).model if isinstance(model, str) else model
    sd = strip_module_prefix(sd)
    cls_w = sd.get("head.gfl_cls.0.weight")
    if cls_w is not None and cls_w.shape[0] != cfg.head.num_classes:
        cfg = dataclasses.replace(cfg, head=dataclasses.replace(cfg.head,
                                                                num_classes=cls_w.shape[0]))
    if class_names is None and cfg.head.num_classes == 80:
        class_names = list(COCO_CLASSES)
    net = DAMOYOLO(cfg, class_names)
    try:
        ours = convert_official_state_dict(sd, net.state_dict(), cfg.backbone.kind, str(path))
    except OfficialCheckpointError as e:
        raise CheckpointError(str(e)) from None
    net.load_state_dict(ours, strict=True)
    net.category_ids = None
    return net.to(device).eval()
