"""Inference on any backend: :class:`Detector`, backends and input sources."""

from .backends import BACKENDS, Backend, BackendError, open_backend
from .detector import Detector, decode_raw_heads
from .sources import Frame, ImageSource, VideoSource, open_source

__all__ = ["BACKENDS", "Backend", "BackendError", "open_backend", "Detector",
           "decode_raw_heads", "Frame", "ImageSource", "VideoSource", "open_source"]
