"""Inference on any backend: :class:`Detector`, backends, input sources and streamed results."""

from .backends import BACKENDS, Backend, BackendError, open_backend
from .detector import Detector, decode_raw_heads
from .results import DISPLAY_CONF, PredictionWriter, predict_source, read_predictions
from .sources import Frame, ImageSource, VideoSource, open_source

__all__ = ["BACKENDS", "Backend", "BackendError", "open_backend", "Detector",
           "decode_raw_heads", "DISPLAY_CONF", "PredictionWriter", "predict_source",
           "read_predictions", "Frame", "ImageSource", "VideoSource", "open_source"]
