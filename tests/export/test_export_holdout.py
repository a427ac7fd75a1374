"""The partial-INT8 hold-out scorer maps boxes from input to original pixels like ``val``.

A stand-in detector returns each held-out image's ground truth in network-input pixels
(plus one box past the input edge); the hold-out AP is then exactly 1 only when x and y are
scaled back by their own factors, and every box lands inside its original image.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("faster_coco_eval")

HW = (64, 96)  # (h, w): not the aspect of any synthetic image, so the axes scale differently


def test_holdout_rescales_boxes_per_axis_and_clips(tmp_path, monkeypatch):
    import damoyolo.eval.coco as results_mod  # where evaluate() converts to COCO results
    import damoyolo.infer.detector as detector_mod
    from damoyolo.data.synthetic import synthesize
    from damoyolo.export.quantize import load_calibration
    from damoyolo.postprocess import Detections
    from damoyolo.workflows.int8 import _Holdout

    synthesize(tmp_path / "d", images=12, seed=3, size=96, val_fraction=0.1, workers=1)
    calib = load_calibration(tmp_path / "d", "train", HW, num_images=2, holdout_images=8,
                             progress=False)
    hold = _Holdout(calib)
    assert len(hold) == 8
    assert any(t["orig_size"][0] != t["orig_size"][1] for _, t in hold.items)

    class StandIn:
        def __init__(self, path, backend, threads, batch_size):
            self.k = 0

        def forward(self, x):
            assert tuple(x.shape[-2:]) == HW
            return [torch.full((1, 10, 6), 0.5)]

        def postprocess(self, outs):
            _, tgt = hold.items[self.k]
            self.k += 1
            n = len(tgt["boxes"])
            off = torch.tensor([[HW[1] - 8.0, HW[0] - 8.0, HW[1] + 40.0, HW[0] + 30.0]])
            return [Detections(torch.cat([tgt["boxes"], off]),
                               torch.cat([torch.full((n,), 0.9), torch.tensor([0.05])]),
                               torch.cat([tgt["labels"], torch.tensor([0])]))]

    seen = []
    real = results_mod.detections_to_coco_results

    def spy(image_id, boxes, *a, **kw):
        seen.append((image_id, np.asarray(boxes).copy()))
        return real(image_id, boxes, *a, **kw)

    monkeypatch.setattr(detector_mod, "Detector", StandIn)
    monkeypatch.setattr(results_mod, "detections_to_coco_results", spy)
    ap, err = hold.evaluate("m.onnx", "onnxruntime", 1, reference=True)
    assert ap == pytest.approx(1.0) and err == 0.0
    sizes = {t["image_id"]: t["orig_size"] for _, t in hold.items}
    assert len(seen) == 8
    for image_id, b in seen:
        oh, ow = sizes[image_id]
        assert (b >= 0).all() and (b[:, 0::2] <= ow).all() and (b[:, 1::2] <= oh).all()
        assert b[-1, 2] == ow and b[-1, 3] == oh  # the box past the edge is clipped to it
    ap, err = hold.evaluate("m.onnx", "onnxruntime", 1)  # against the stored fp32 scores
    assert ap == pytest.approx(1.0) and err == 0.0
