"""COCO evaluation: mAP through faster-coco-eval, per-class AP, results json, timing.

A checkpoint or an exported file opens as a :class:`Predictor` through
:func:`damoyolo.workflows.evaluate.open_predictor`.
"""


from .coco import EvalResult, coco_metrics, evaluate, format_report
from .predictor import Predictor
from .._moved import moved

__all__ = ["EvalResult", "coco_metrics", "evaluate", "format_report", "Predictor"]

# Deprecated: one release only.  open_predictor needs infer, so it lives in
# damoyolo.workflows.evaluate; the old name imports from there with a DeprecationWarning.
# The module is named as a string (importlib) so that this shim is not an import from the
# eval floor up to workflows; nothing else in the package may do this.
_MOVED = {"open_predictor": "damoyolo.workflows.evaluate"}


__getattr__ = moved(__name__, _MOVED)
