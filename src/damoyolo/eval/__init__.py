"""COCO evaluation: mAP through faster-coco-eval, per-class AP, results json, timing."""

from .coco import EvalResult, coco_metrics, evaluate, format_report
from .predictor import Predictor, open_predictor

__all__ = ["EvalResult", "coco_metrics", "evaluate", "format_report", "Predictor",
           "open_predictor"]
