"""Official DAMO-YOLO checkpoints: explicit key mapping to our modules.

An official release checkpoint is ``{'model': state_dict}`` (sometimes with a
``module.`` prefix from DDP) holding the training-structure (not
re-parameterised) model.  :func:`official_key_to_ours` maps each official key to
ours by explicit rules; :func:`convert_official_state_dict` applies it, checks that
the mapping is one-to-one and that every shape matches, and reports missing or
unexpected keys by name.

Rules, in order (official -> ours):

backbone layout
    ``backbone.block_list.0``                 -> ``backbone.stages.0`` (stem)
    ``backbone.block_list.{i}.block_list.{j}`` -> ``backbone.stages.{i}.{j}`` (res, mob)
    ``backbone.csp_stage.{i}``                -> ``backbone.stages.{i}`` (csp), inside it
    ``downsampler/conv_start/conv_shortcut/conv_fuse/convstem.{j}`` ->
    ``down/start/shortcut/fuse/units.{j}``
mobile units (``conv`` Sequential)
    backbone indices 0,1 / 3,4 / 7,8 and neck indices 0,1 / 3,4 / 6,7 ->
    ``expand.conv/bn``, ``dw.conv/bn``, ``project.conv/bn`` (the backbone's Sequential
    holds an extra parameter-free SE placeholder)
conv+BN primitives
    ``X.conv.conv1`` / ``X.conv.bn1`` (ConvKXBNRELU) -> ``X.conv`` / ``X.bn``;
    ``X.conv1.weight`` / ``X.bn1`` (ConvKXBN)       -> ``X.conv`` / ``X.bn``;
    ``residual_proj`` -> ``proj``; RepConv ``rbr_dense`` / ``rbr_1x1`` -> ``dense`` / ``pointwise``
    (both are conv+BN: ``.conv`` / ``.bn``)
neck
    depthwise down-samplers ``depthwise/dwnorm/pointwise/pwnorm`` ->
    ``dw.conv/dw.bn/pw.conv/pw.bn``; CSP ``conv1/conv2/conv3/convs.{k}`` ->
    ``split1/split2/fuse/units.{k}``; unit ``conv2`` (RepConv) -> ``rep``, unit
    ``conv1`` -> ``conv``; depthwise unit ``conv.conv.{idx}`` -> mobile unit rule
head
    ``gfl_cls.{i}`` -> ``cls_preds.{i}``, ``gfl_reg.{i}`` -> ``reg_preds.{i}``;
    ``integral.project`` (a fixed ``0..reg_max`` buffer) is checked and dropped.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor
from ..errors import DamoyoloError

__all__ = ["OfficialCheckpointError", "official_key_to_ours", "convert_official_state_dict",
           "strip_module_prefix", "DROPPED"]

DROPPED = None  # marker: an official key that has no counterpart (checked, then dropped)

_MOB_BACKBONE_IDX = {"0": "expand.conv", "1": "expand.bn", "3": "dw.conv", "4": "dw.bn",
                     "7": "project.conv", "8": "project.bn"}
_MOB_NECK_IDX = {"0": "expand.conv", "1": "expand.bn", "3": "dw.conv", "4": "dw.bn",
                 "6": "project.conv", "7": "project.bn"}


class OfficialCheckpointError(DamoyoloError, KeyError):
    """An official checkpoint does not fit the model (missing/unexpected keys or shapes)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


def strip_module_prefix(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Remove DDP/DataParallel ``module.`` prefixes."""
    return {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}


def _primitives(rest: str) -> str:
    """Rename conv+BN primitives inside a module path tail."""
    rest = re.sub(r"(^|\.)rbr_dense\.", r"\1dense.", rest)
    rest = re.sub(r"(^|\.)rbr_1x1\.", r"\1pointwise.", rest)
    rest = re.sub(r"(^|\.)residual_proj\.", r"\1proj.", rest)
    # ConvKXBNRELU: X.conv.conv1.weight / X.conv.bn1.* -> X.conv.weight / X.bn.*
    rest = re.sub(r"(^|\.)conv\.conv1\.weight$", r"\1conv.weight", rest)
    rest = re.sub(r"(^|\.)conv\.bn1\.", r"\1bn.", rest)
    # ConvKXBN: X.conv1.weight / X.bn1.* -> X.conv.weight / X.bn.*
    rest = re.sub(r"(^|\.)conv1\.weight$", r"\1conv.weight", rest)
    rest = re.sub(r"(^|\.)bn1\.", r"\1bn.", rest)
    return rest


def _mobile(rest: str, table: dict[str, str]) -> str:
    m = re.match(r"^conv\.(\d+)\.(.+)$", rest)
    if not m or m.group(1) not in table:
        raise OfficialCheckpointError(f"unexpected mobile-block key tail {rest!r}")
    return f"{table[m.group(1)]}.{m.group(2)}"


def _backbone(key: str, kind: str) -> str:
    if kind == "csp":
        m = re.match(r"^backbone\.csp_stage\.(\d+)\.(.+)$", key)
        if not m:
            raise OfficialCheckpointError(f"unexpected key for a CSP backbone: {key!r}")
        i, rest = m.groups()
        if i == "0":
            return f"backbone.stages.0.{_primitives(rest)}"
        rest = re.sub(r"^downsampler\.", "down.", rest)
        rest = re.sub(r"^conv_start\.", "start.", rest)
        rest = re.sub(r"^conv_shortcut\.", "shortcut.", rest)
        rest = re.sub(r"^conv_fuse\.", "fuse.", rest)
        rest = re.sub(r"^convstem\.(\d+)\.", r"units.\1.", rest)
        return f"backbone.stages.{i}.{_primitives(rest)}"
    m = re.match(r"^backbone\.block_list\.0\.(.+)$", key)
    if m:
        return f"backbone.stages.0.{_primitives(m.group(1))}"
    m = re.match(r"^backbone\.block_list\.(\d+)\.block_list\.(\d+)\.(.+)$", key)
    if not m:
        raise OfficialCheckpointError(f"unexpected backbone key {key!r}")
    i, j, rest = m.groups()
    if kind == "mob" and rest.startswith("conv."):
        rest = _mobile(rest, _MOB_BACKBONE_IDX)
    else:
        rest = _primitives(rest)
    return f"backbone.stages.{i}.{j}.{rest}"


def _neck(key: str) -> str:
    m = re.match(r"^neck\.(bu_conv\d+)\.(depthwise|dwnorm|pointwise|pwnorm)\.(.+)$", key)
    if m:
        node, part, tail = m.groups()
        new = {"depthwise": "dw.conv", "dwnorm": "dw.bn", "pointwise": "pw.conv",
               "pwnorm": "pw.bn"}[part]
        return f"neck.{node}.{new}.{tail}"
    m = re.match(r"^neck\.(bu_conv\d+)\.(.+)$", key)
    if m:
        return f"neck.{m.group(1)}.{m.group(2)}"
    m = re.match(r"^neck\.(merge_\d+)\.(.+)$", key)
    if not m:
        raise OfficialCheckpointError(f"unexpected neck key {key!r}")
    node, rest = m.groups()
    for old, new in (("conv1.", "split1."), ("conv2.", "split2."), ("conv3.", "fuse.")):
        if rest.startswith(old):
            return f"neck.{node}.{new}{rest[len(old):]}"
    m = re.match(r"^convs\.(\d+)\.(.+)$", rest)
    if not m:
        raise OfficialCheckpointError(f"unexpected neck key {key!r}")
    k, tail = m.groups()
    if tail.startswith("conv.conv."):  # depthwise unit: BasicBlock.conv = MobileV3Block
        return f"neck.{node}.units.{k}.{_mobile(tail[len('conv.'):], _MOB_NECK_IDX)}"
    if tail.startswith("conv2."):
        return f"neck.{node}.units.{k}.rep.{_primitives(tail[len('conv2.'):])}"
    if tail.startswith("conv1."):
        return f"neck.{node}.units.{k}.conv.{tail[len('conv1.'):]}"
    raise OfficialCheckpointError(f"unexpected neck key {key!r}")


def _head(key: str) -> str | None:
    if key == "head.integral.project":
        return DROPPED
    m = re.match(r"^head\.gfl_(cls|reg)\.(\d+)\.(weight|bias)$", key)
    if m:
        part = "cls_preds" if m.group(1) == "cls" else "reg_preds"
        return f"head.{part}.{m.group(2)}.{m.group(3)}"
    m = re.match(r"^head\.scales\.(\d+)\.scale$", key)
    if m:
        return key
    raise OfficialCheckpointError(
        f"unexpected head key {key!r} (stacked head convs are not part of any released model)")


def official_key_to_ours(key: str, backbone_kind: str) -> str | None:
    """Map one official state-dict key to ours (``None`` for a checked, dropped buffer)."""
    if key.startswith("backbone."):
        return _backbone(key, backbone_kind)
    if key.startswith("neck."):
        return _neck(key)
    if key.startswith("head."):
        return _head(key)
    raise OfficialCheckpointError(f"unexpected top-level key {key!r}")


def convert_official_state_dict(official: dict[str, Tensor], ours: dict[str, Tensor],
                                backbone_kind: str, source: str = "checkpoint"
                                ) -> dict[str, Tensor]:
    """Translate an official state dict into ours, strictly.

    ``ours`` is the target model's state dict (for the key set and shapes).  Raises
    :class:`OfficialCheckpointError` naming every missing / unexpected / mismatched key.
    """
    official = strip_module_prefix(official)
    out: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    unexpected, mismatched = [], []
    for k, v in official.items():
        try:
            new = official_key_to_ours(k, backbone_kind)
        except OfficialCheckpointError:
            unexpected.append(k)
            continue
        if new is DROPPED:
            reg_max = v.numel() - 1
            if not torch.allclose(v.float().cpu(), torch.linspace(0, reg_max, reg_max + 1)):
                raise OfficialCheckpointError(f"{source}: {k} is not the fixed 0..reg_max ramp")
            continue
        if new in origin:
            raise OfficialCheckpointError(
                f"{source}: official keys {origin[new]!r} and {k!r} both map to {new!r}")
        if new not in ours:
            unexpected.append(k)
            continue
        if tuple(ours[new].shape) != tuple(v.shape):
            mismatched.append(f"{k} {tuple(v.shape)} -> {new} {tuple(ours[new].shape)}")
            continue
        origin[new] = k
        out[new] = v
    missing = [k for k in ours if k not in out]
    problems = []
    if unexpected:
        problems.append(f"unexpected official keys ({len(unexpected)}): "
                        + ", ".join(unexpected[:10]) + (" ..." if len(unexpected) > 10 else ""))
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}): " + "; ".join(mismatched[:10])
                        + (" ..." if len(mismatched) > 10 else ""))
    if missing:
        problems.append(f"missing keys ({len(missing)}): " + ", ".join(missing[:10])
                        + (" ..." if len(missing) > 10 else ""))
    if problems:
        raise OfficialCheckpointError(
            f"{source} does not fit this model: " + " | ".join(problems)
            + ". Check that --model names the architecture the checkpoint was trained with.")
    return out
