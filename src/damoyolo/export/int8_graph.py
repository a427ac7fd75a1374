"""The graph side of INT8 quantization: the float head and the block partition.

The head's decode -- the sigmoid of the class scores, the DFL softmax and its expectation
(MatMul), the box arithmetic and, for end-to-end graphs, the NMS -- stays float.  Those nodes
are found by a graph pattern, not by node index: every node on a path from a graph output
back to the first convolution (the head's prediction convolutions, whose weights and inputs
are quantized but whose outputs are not).  :func:`float_head_onnx` and
:func:`float_head_openvino` check the pattern (one class and one box convolution per level,
a Sigmoid on the way, and for decoded outputs the Softmax + MatMul) and raise
:class:`QuantizeError` when a graph does not have it.

Partial quantization cuts the rest of the graph into blocks by module path
(``backbone.stages.2``, ``neck.merge_3``, ``head.reg_preds.0``, ...; :func:`graph_blocks`),
which works for every preset and for searched backbones.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Sequence

from .onnx import ExportError

__all__ = ["QuantizeError", "FloatHead", "float_head_onnx", "float_head_openvino", "block_of",
           "graph_blocks"]

_CONV_ONNX = {"Conv", "ConvInteger", "QLinearConv"}
_CONV_OV = {"Convolution", "GroupConvolution"}


class QuantizeError(ExportError):
    """INT8 quantization could not be done (calibration data, graph pattern, option)."""


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

