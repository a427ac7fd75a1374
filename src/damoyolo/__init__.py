"""damoyolo: DAMO-YOLO real-time object detection.

Public API::

    import damoyolo
    damoyolo.list_models()                        # the eight published presets
    model = damoyolo.build_model("damoyolo-t")    # random weights
    model = damoyolo.load_model("ckpt.pth", model="damoyolo-t")  # ours or official
    model.eval(); out = model(images); scores, boxes = model.decode(out)
    damoyolo.reparameterize(model)                # deploy form
    det = damoyolo.Detector("ckpt.pth")           # or model.onnx / model.xml, or
    # model.engine with trust_engine=True (a TensorRT engine is native code: one you built)
    d = det("image.jpg")                          # Detections in original-image pixels
"""

from ._version import __version__
from .checkpoint import load_model, save_model  # noqa: E402
from .models.factory import build_model  # noqa: E402
from .config import ModelConfig  # noqa: E402
from .models.detector import DAMOYOLO  # noqa: E402
from .models.reparam import reparameterize  # noqa: E402
from .postprocess import Detections  # noqa: E402
from .presets import PRESETS, get_preset, preset_names  # noqa: E402
from .infer.detector import Detector  # noqa: E402


def __getattr__(name: str):
    # train is damoyolo.workflows.train.train, imported on first use: the training stack
    # stays out of `import damoyolo` for those who only predict or export
    if name == "train":
        from .workflows.train import train
        globals()["train"] = train
        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def list_models() -> list[str]:
    """Names of the published presets."""
    return preset_names()


__all__ = ["__version__", "build_model", "load_model", "save_model", "ModelConfig", "DAMOYOLO",
           "reparameterize", "Detections", "Detector", "PRESETS", "get_preset", "preset_names",
           "list_models", "train"]
