"""``Detector``: images in, :class:`~damoyolo.postprocess.Detections` out, on any backend.

Example::

    det = damoyolo.Detector("damoyolo_t.pth")                 # torch
    det = damoyolo.Detector("model.onnx")                     # onnxruntime (by suffix)
    det = damoyolo.Detector("model.xml", backend="openvino")
    d = det("dog.jpg")                 # one image -> Detections
    ds = det([img_rgb, "b.png"])       # list -> list of Detections
    d.boxes (K, 4) xyxy original-image pixels, d.scores (K,), d.labels (K,), d.names

Array inputs are HxWx3 **RGB** uint8 by default (pass ``bgr=True`` for OpenCV's BGR
arrays); grayscale, RGBA/BGRA, 16-bit and float images are converted by
:func:`damoyolo.preprocess.to_rgb_uint8`.  Paths are decoded with OpenCV and converted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..config import ConfigError
from ..models.heads.zero_head import decode_dfl, flatten_dfl, make_priors
from ..postprocess import Detections, postprocess, scale_boxes
from ..preprocess import ImageMeta, preprocess_batch, read_image, to_rgb_uint8
from .backends import Backend, open_backend

__all__ = ["Detector", "decode_raw_heads"]


def decode_raw_heads(outs: Sequence[Tensor], strides: Sequence[int], reg_max: int
                     ) -> tuple[Tensor, Tensor]:
    """Official benchmark-mode outputs -> (scores (B, A, C), boxes (B, A, 4) xyxy pixels).

    outs: ``cls_s*`` (B, C, H, W) sigmoid scores for every level, then ``reg_s*``
    (B, 4*(reg_max+1), H, W) DFL logits for every level.
    """
    n = len(strides)
    cls, reg = outs[:n], outs[n:]
    scores = torch.cat([c.flatten(2) for c in cls], 2).transpose(1, 2)
    r = flatten_dfl(reg, reg_max).float()
    priors = make_priors([tuple(c.shape[-2:]) for c in cls], tuple(strides), device=r.device)
    proj = torch.arange(reg_max + 1, dtype=r.dtype, device=r.device)
    return scores.float(), decode_dfl(r, priors[:, :2], priors[:, 2:3], proj)


class Detector:
    """Run a DAMO-YOLO model (checkpoint or export) on images.

    Args:
        weights: a damoyolo/official ``.pth`` checkpoint, an exported ``.onnx``, an
            OpenVINO ``.xml``, a TensorRT ``.engine``, or a :class:`damoyolo.DAMOYOLO`.
        backend: ``"torch" | "onnxruntime" | "openvino" | "tensorrt"`` (default: by suffix).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ... (OpenVINO: its device name).
        conf, iou, max_det: post-processing (default: the preset's conf/IoU, 300 boxes).
            For end-to-end exports, NMS runs inside the graph with the thresholds fixed at
            export time; ``conf`` can only raise the score cut-off there.
        classes: keep only these class indices.
        half: fp16 (torch on CUDA, TensorRT).
        imgsz: (H, W) network input for the torch backend (exports have a fixed size).
        model: preset name, needed for official checkpoints.
        threads: CPU threads for the backend (default: the runtime's own choice).
        batch_size: images per forward pass when the graph accepts any batch size.
        trust_engine: load a TensorRT engine (native code: only an engine you built or trust;
            without it an engine is refused).
    """

    def __init__(self, weights, backend: str | None = None, device: str = "cpu",
                 conf: float | None = None, iou: float | None = None, max_det: int = 300,
                 classes: Sequence[int] | None = None, half: bool = False,
                 imgsz: int | tuple[int, int] | None = None, model: str | None = None,
                 threads: int | None = None, batch_size: int = 8, trust_engine: bool = False):
        if isinstance(imgsz, int):
            imgsz = (imgsz, imgsz)
        if imgsz is not None and any(v <= 0 or v % 32 for v in imgsz):
            raise ConfigError(f"imgsz {tuple(imgsz)} must be positive multiples of 32")
        self.backend: Backend = open_backend(weights, backend, device=device, threads=threads,
                                             half=half, model=model, imgsz=imgsz,
                                             trust_engine=trust_engine)
        meta = self.backend.meta
        if imgsz is not None and tuple(imgsz) != self.backend.input_size:
            raise ConfigError(f"{weights}: exported for input {tuple(meta.input_size)}, "
                              f"cannot run at {tuple(imgsz)} (re-export with --imgsz)")
        self.conf = float(meta.conf_thresh if conf is None else conf)
        self.iou = float(meta.iou_thresh if iou is None else iou)
        self.max_det = int(max_det)
        self.classes = list(classes) if classes is not None else None
        self.batch_size = self.backend.batch or max(1, int(batch_size))

    @property
    def class_names(self) -> list[str]:
        return self.backend.class_names

    @property
    def input_size(self) -> tuple[int, int]:
        """Network input (H, W)."""
        return self.backend.input_size

    def load(self, image, bgr: bool = False) -> np.ndarray:
        """A path or array -> HxWx3 uint8 RGB (arrays are RGB unless ``bgr``)."""
        if isinstance(image, (str, Path)):
            return read_image(image)
        if isinstance(image, np.ndarray):
            return to_rgb_uint8(image, "array", channel_order="bgr" if bgr else "rgb")
        raise TypeError(f"expected a path or a numpy array, got {type(image).__name__}")

    def _forward(self, batch: Tensor) -> list[Tensor]:
        """Run the backend, padding a static-batch graph with blank images."""
        n, fixed = batch.shape[0], self.backend.batch
        if fixed is None or n == fixed:
            return self.backend(batch)
        if n > fixed:
            parts = [self._forward(batch[i:i + fixed]) for i in range(0, n, fixed)]
            return [torch.cat(p, 0) for p in zip(*parts)]
        pad = batch.new_zeros((fixed - n, *batch.shape[1:]))
        return [o[:n] for o in self.backend(torch.cat([batch, pad], 0))]

    @torch.no_grad()
    def predict_batch(self, batch: Tensor) -> list[Detections]:
        """Preprocessed batch (B, 3, H, W) float32 RGB 0..255 -> Detections in input pixels.

        The entry point for evaluators: the batch must already have the backend's input
        size (see :mod:`damoyolo.preprocess`).  Same as ``postprocess(forward(batch))``.
        """
        return self.postprocess(self.forward(batch))

    @torch.no_grad()
    def forward(self, batch: Tensor) -> list[Tensor]:
        """Run the network only: preprocessed batch (B, 3, H, W) -> graph outputs.

        Outputs are in the backend's ``mode`` layout (see :mod:`damoyolo.infer.backends`);
        for end-to-end exports this includes the in-graph NMS.
        """
        if tuple(batch.shape[-2:]) != tuple(self.input_size) and self.backend.name != "torch":
            raise ValueError(f"batch of size {tuple(batch.shape[-2:])}, model input is "
                             f"{self.input_size}")
        return self._forward(batch)

    @torch.no_grad()
    def postprocess(self, outs: list[Tensor]) -> list[Detections]:
        """Graph outputs of :meth:`forward` -> Detections in input pixels (decode + NMS,
        or for end-to-end exports only the ``conf``/``classes``/``max_det`` filters); the
        counterpart of :meth:`damoyolo.DAMOYOLO.postprocess`."""
        names = self.class_names
        mode = self.backend.mode
        if mode == "end2end":
            return self._from_end2end(outs, names)
        if mode == "raw_heads":
            scores, boxes = decode_raw_heads(outs, self.backend.meta.strides,
                                             self.backend.meta.reg_max)
        else:
            scores, boxes = outs
        return postprocess(scores, boxes, self.conf, self.iou, self.max_det, class_names=names,
                           classes=self.classes)

    def _from_end2end(self, outs: list[Tensor], names: list[str]) -> list[Detections]:
        num, boxes, scores, labels = outs
        res = []
        for i in range(boxes.shape[0]):
            k = int(num[i, 0])
            b, s, lab = boxes[i, :k].float(), scores[i, :k].float(), labels[i, :k].long()
            keep = s > self.conf
            if self.classes is not None:
                keep &= torch.isin(lab, torch.as_tensor(self.classes, dtype=torch.long))
            keep_idx = keep.nonzero().flatten()[: self.max_det]
            res.append(Detections(b[keep_idx], s[keep_idx], lab[keep_idx], names))
        return res

    def preprocess(self, images: list, bgr: bool = False) -> tuple[Tensor, list[ImageMeta]]:
        """Load and preprocess images -> (batch (B, 3, H, W), metas)."""
        return preprocess_batch([self.load(im, bgr) for im in images], self.input_size)

    def predict_arrays(self, images_rgb: list[np.ndarray]) -> list[Detections]:
        """HxWx3 uint8 RGB arrays -> Detections in original-image pixels."""
        out: list[Detections] = []
        for i in range(0, len(images_rgb), self.batch_size):
            batch, metas = preprocess_batch(images_rgb[i:i + self.batch_size], self.input_size)
            for d, m in zip(self.predict_batch(batch), metas):
                out.append(Detections(scale_boxes(d.boxes, m.scale_xy, m.orig_hw), d.scores,
                                      d.labels, d.class_names))
        return out

    def __call__(self, images, bgr: bool = False):
        """One image (path or array) -> Detections; a list/tuple -> list of Detections.

        Boxes are xyxy in original-image pixels (clipped to the image).
        """
        single = isinstance(images, (str, Path)) or (isinstance(images, np.ndarray)
                                                     and images.ndim in (2, 3))
        items = [images] if single else list(images)
        dets = self.predict_arrays([self.load(im, bgr) for im in items])
        return dets[0] if single else dets

    def __repr__(self) -> str:
        return (f"Detector(backend={self.backend.name}, mode={self.backend.mode}, "
                f"input={self.input_size}, classes={len(self.class_names)})")

    def track(self, source, tracker: str = "bytetrack", batch_size: int = 1, **settings):
        """Detect and track objects over a video, camera, image folder/glob or an iterable
        of RGB arrays: yields a :class:`damoyolo.track.api.TrackFrame` per frame (its
        ``tracks`` has ``boxes``, ``ids``, ``scores``, ``labels``).  ``tracker``:
        ``"bytetrack"`` or ``"iou"``; ``settings``: its config fields (docs/tracking.md).
        A path or camera index is opened with :func:`damoyolo.infer.sources.open_source`
        when the first frame is asked for."""
        from ..track.api import track_stream
        from .sources import open_source

        def frames():
            src = source
            if isinstance(src, (str, int)) or hasattr(src, "__fspath__"):
                src = open_source(str(src) if hasattr(src, "__fspath__") else src)
            yield from src

        return track_stream(self.predict_arrays, frames(), class_names=self.class_names,
                            tracker=tracker, batch_size=batch_size, **settings)
