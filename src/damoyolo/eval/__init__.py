"""COCO evaluation: mAP through faster-coco-eval, per-class AP, results json, timing."""

from .coco import EvalResult, coco_metrics, evaluate, format_report

__all__ = ["EvalResult", "coco_metrics", "evaluate", "format_report"]
