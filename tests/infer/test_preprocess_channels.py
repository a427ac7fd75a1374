"""to_rgb_uint8 channel handling: BGR(A) inputs give exactly the reversed RGB channels."""

import numpy as np
import pytest

from damoyolo.preprocess import to_rgb_uint8


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("order", ["bgr", "rgb"])
def test_channel_order_exact(channels, order):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 53, channels), dtype=np.uint8)
    out = to_rgb_uint8(img, "x.png", channel_order=order)
    want = img[:, :, :3][:, :, ::-1] if order == "bgr" else img[:, :, :3]
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    assert np.array_equal(out, want)


def test_bad_channel_count_names_source():
    with pytest.raises(Exception, match="bad.png: unsupported channel count 2"):
        to_rgb_uint8(np.zeros((4, 4, 2), np.uint8), "bad.png", channel_order="bgr")
