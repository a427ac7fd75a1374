"""to_rgb_uint8 normalises gray, RGBA, 16-bit and BGR arrays; read_image names bad files."""

from __future__ import annotations

import numpy as np
import pytest

from damoyolo.preprocess import ImageReadError, read_image, to_rgb_uint8


def test_image_normalisation(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert to_rgb_uint8(gray).shape == (3, 4, 3)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 200
    assert to_rgb_uint8(rgba)[0, 0].tolist() == [200, 0, 0]
    deep = np.full((2, 2, 3), 65535, np.uint16)
    assert to_rgb_uint8(deep).max() == 255
    bgr = np.zeros((1, 1, 3), np.uint8)
    bgr[..., 0] = 9
    assert to_rgb_uint8(bgr, channel_order="bgr")[0, 0].tolist() == [0, 0, 9]
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.jpg: empty file"):
        read_image(tmp_path / "empty.jpg")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ImageReadError, match="bad.png: not a readable image"):
        read_image(tmp_path / "bad.png")
