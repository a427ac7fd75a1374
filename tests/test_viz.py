"""draw_detections: boxes and labels drawn, the best-scored label on top where they overlap."""

import numpy as np
import torch

from damoyolo.postprocess import Detections
from damoyolo.viz import color_for, draw_detections


def test_best_score_drawn_last_on_shared_box():
    img = np.zeros((120, 160, 3), np.uint8)
    box = torch.tensor([[40.0, 50.0, 120.0, 110.0]] * 2)
    # sorted by score, as the postprocess returns them: the best first
    det = Detections(box, torch.tensor([0.9, 0.3]), torch.tensor([1, 4]), ["a", "b", "c", "d", "e"])
    out = draw_detections(img, det)
    assert out.shape == img.shape and not np.array_equal(out, img)
    edge = tuple(int(v) for v in out[80, 40])  # left edge of the shared box
    assert edge == color_for(1)  # the 0.9 box's colour, not the 0.3 one's
    assert color_for(1) != color_for(4)
    assert np.array_equal(img, np.zeros_like(img))  # the input is not drawn on
