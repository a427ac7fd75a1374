"""Image sizes from headers (every format read), wherever the size sits in the file."""

from __future__ import annotations

import io
import struct

import cv2
import numpy as np
import pytest

from damoyolo.imageheader import ImageTooLargeError, check_image_pixels, header_size, \
    set_max_image_pixels
from damoyolo.preprocess import ImageReadError, read_image


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif", ".webp", ".ppm", ".pgm"])
def test_every_read_format_gives_its_size_from_bytes_and_files(ext):
    img = np.zeros((37, 53, 3) if ext != ".pgm" else (37, 53), np.uint8)
    ok, enc = cv2.imencode(ext, img)
    assert ok
    assert header_size(enc.tobytes()) == (37, 53) == header_size(io.BytesIO(enc.tobytes()))


def test_size_found_behind_large_metadata_and_at_the_end_of_a_tiff(tmp_path):
    ok, enc = cv2.imencode(".jpg", np.zeros((37, 53, 3), np.uint8))
    b = enc.tobytes()
    app = b"\xff\xe1" + struct.pack(">H", 65000) + b"\x00" * 64998  # EXIF-sized segments
    assert header_size(b[:2] + app + app + b[2:]) == (37, 53)
    ok, tif = cv2.imencode(".tif", np.random.default_rng(0).integers(
        0, 255, (300, 400, 3), dtype=np.uint8))
    data = tif.tobytes()
    ifd = struct.unpack("<I" if data[:2] == b"II" else ">I", data[4:8])[0]
    assert ifd > 65536  # the directory sits past the first 64 KB
    assert header_size(data) == (300, 400)
    p = tmp_path / "big.tif"
    p.write_bytes(data)
    set_max_image_pixels(300 * 400 - 1)
    try:
        with pytest.raises(ImageReadError, match="big.tif: 400x300 pixels"):
            read_image(p)
    finally:
        set_max_image_pixels(None)
    assert read_image(p).shape == (300, 400, 3)


def test_limit_and_broken_headers():
    check_image_pixels((10000, 10000), "x")  # the default: 100 MP
    with pytest.raises(ImageTooLargeError, match="f.png: 10001x10000 pixels"):
        check_image_pixels((10000, 10001), "f.png")
    for junk in (b"", b"\x89PNG", b"\xff\xd8\xff", b"II*\x00\xff\xff\xff\x7f", b"P6 x y 255"):
        assert header_size(junk) is None


@pytest.mark.parametrize("env", ["0", "-5", "abc", "1.5", "1e8", "true"])
def test_a_bad_pixel_limit_in_the_environment_is_a_config_error(env, monkeypatch):
    from damoyolo.config import ConfigError
    from damoyolo.imageheader import max_image_pixels
    monkeypatch.setenv("DAMOYOLO_MAX_IMAGE_PIXELS", env)
    with pytest.raises(ConfigError, match=f"DAMOYOLO_MAX_IMAGE_PIXELS='{env}': .*integer >= 1"):
        max_image_pixels()
    with pytest.raises(ConfigError):  # not an oversized image: the setting is wrong
        check_image_pixels((2, 2), "f.png")


def test_pixel_limit_from_the_environment_and_the_setter(monkeypatch):
    from damoyolo.config import ConfigError
    from damoyolo.imageheader import DEFAULT_MAX_IMAGE_PIXELS, max_image_pixels
    monkeypatch.setenv("DAMOYOLO_MAX_IMAGE_PIXELS", " 1000 ")
    assert max_image_pixels() == 1000
    monkeypatch.setenv("DAMOYOLO_MAX_IMAGE_PIXELS", "")
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS
    for bad in (0, -1, 1.5, 100.0, "100", True):
        with pytest.raises(ConfigError, match=r"set_max_image_pixels\(.*integer >= 1"):
            set_max_image_pixels(bad)
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS  # a refused value changes nothing
    try:
        set_max_image_pixels(np.int64(7))
        assert max_image_pixels() == 7
    finally:
        set_max_image_pixels(None)
