"""One DFL decode: the head, the raw ONNX wrapper and the per-level (raw_heads) decode agree
to the bit, and the decode is the expectation over the bins times the stride."""

from __future__ import annotations

import torch

from damoyolo.export.onnx import RawExport
from damoyolo.infer.detector import decode_raw_heads
from damoyolo.models.factory import build_model
from damoyolo.models.heads.zero_head import decode_dfl, flatten_dfl, make_priors

torch.set_num_threads(1)


def test_the_three_callers_give_identical_boxes():
    torch.manual_seed(0)
    model = build_model("damoyolo-ns").eval()
    for p in model.head.reg_preds.parameters():  # spread the DFL logits
        p.data.normal_(0, 0.5)
    x = torch.rand(2, 3, 64, 96) * 255
    with torch.no_grad():
        out = model(x)
        s_head, b_head = model.decode(out)
        s_lvl, b_lvl = decode_raw_heads([c.sigmoid() for c in out.cls] + list(out.reg),
                                        model.head.strides, model.head.reg_max)
        s_exp, b_exp = RawExport(model, (64, 96))(x)
    assert torch.equal(b_lvl, b_exp)  # the same ops on the same layout
    # the head decodes a contiguous copy of that layout (for the criterion): same values
    # up to the summation order of the bins
    torch.testing.assert_close(b_head, b_exp, rtol=0, atol=1e-4)
    assert float(b_head.std()) > 1.0  # boxes of several pixels, not a degenerate case
    assert torch.equal(s_head, s_lvl) and torch.equal(s_head, s_exp)


def test_decode_by_hand():
    """One anchor at (32, 16), stride 8, reg_max 3: distances are the softmax-weighted bin
    index times the stride; all mass on bin 2 for l, bin 0 for t, uniform for r and b."""
    big = 50.0
    logits = torch.tensor([[0, 0, big, 0], [big, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1.]])
    reg = logits.reshape(1, 1, 4, 4)
    box = decode_dfl(reg, torch.tensor([[32.0, 16.0]]), torch.tensor([[8.0]]),
                     torch.arange(4.0))
    torch.testing.assert_close(box, torch.tensor([[[32 - 16, 16 - 0, 32 + 12, 16 + 12.]]]))


def test_flatten_dfl_layout():
    """Channel = side * (R+1) + bin; anchors in stride order, row-major per level."""
    r = 2
    lvl0 = torch.arange(4 * (r + 1) * 2 * 2, dtype=torch.float32).reshape(1, 4 * (r + 1), 2, 2)
    lvl1 = -torch.ones(1, 4 * (r + 1), 1, 1)
    flat = flatten_dfl([lvl0, lvl1], r)
    assert flat.shape == (1, 5, 4, r + 1)
    # anchor (row 1, col 0) of level 0 = spatial index 2; side t (1), bin 2 -> channel 5
    assert flat[0, 2, 1, 2] == lvl0[0, 5, 1, 0]
    assert torch.equal(flat[0, 4], -torch.ones(4, r + 1))
    pri = make_priors([(2, 2), (1, 1)], (8, 16))
    assert pri[2].tolist() == [0.0, 8.0, 8.0, 8.0] and pri[4].tolist() == [0.0, 0.0, 16.0, 16.0]
