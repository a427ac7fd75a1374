"""An image that cannot be read when it is loaded (corrupt data behind an annotation that
declares its size, or a header over the pixel limit) is a counted skip in training and is
left out of the evaluation: never a crash, never silently trained on."""

import struct
import zlib

import numpy as np
import pytest
import torch

from damoyolo.data import load_dataset
from damoyolo.data.dataset import DetectionDataset, build_loader, collate
from damoyolo.eval.coco import evaluate
from damoyolo.postprocess import Detections
from damoyolo.preprocess import ImageReadError


def _bomb_png(w: int, h: int) -> bytes:
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b""))


@pytest.fixture
def broken(coco_dir):
    """The tiny COCO set (sizes declared in the annotations) with image 2 truncated and
    image 3 a PNG whose header claims 100000 x 100000 pixels."""
    (coco_dir / "train" / "2.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (coco_dir / "train" / "3.jpg").write_bytes(_bomb_png(100000, 100000))
    return load_dataset(coco_dir, "train")


@pytest.mark.parametrize("strong", [False, True])
def test_training_skips_an_unreadable_image_and_says_so(broken, strong):
    ds = DetectionDataset(broken, (64, 64), train=True, seed=0)
    ds.set_strong_augment(strong)
    skipped = []
    for i in range(len(ds)):
        img, tgt = ds[i]
        assert img.shape == (3, 64, 64) and torch.isfinite(img).all()
        skipped += tgt.get("skipped", [])
    names = {s.split(":")[0].rsplit("/", 1)[-1] for s in skipped}
    assert {"2.jpg", "3.jpg"} <= names
    assert any("pixel" in s for s in skipped)  # the bomb is refused before decoding


def test_the_replacement_is_the_next_readable_image(broken):
    from damoyolo.config import AugmentConfig
    ds = DetectionDataset(broken, (64, 64), train=True, seed=0, aug=AugmentConfig(flip_prob=0.0))
    ds.set_strong_augment(False)
    img2, tgt2 = ds[1]  # 2.jpg and 3.jpg unreadable: 1.jpg (index 0) stands in
    img1, tgt1 = ds[0]
    assert len(tgt2["skipped"]) == 1 and "2.jpg" in tgt2["skipped"][0]
    assert torch.equal(img2, img1) and torch.equal(tgt2["boxes"], tgt1["boxes"])
    assert "skipped" not in tgt1


def test_no_readable_image_at_all_is_one_clear_error(broken, coco_dir):
    (coco_dir / "train" / "1.jpg").write_bytes(b"not an image")
    ds = DetectionDataset(broken, (64, 64), train=True, seed=0)
    ds.set_strong_augment(False)
    with pytest.raises(ImageReadError, match="none of its 3 images can be read"):
        ds[0]


def test_evaluation_leaves_an_unreadable_image_out_of_the_scores(broken, capsys):
    ds = DetectionDataset(broken, (64, 64), train=False)
    img, tgt = ds[1]
    assert tgt["skipped"] and float(img.abs().sum()) == 0.0
    gt = broken.to_coco_dict()
    seen = []

    def predict(images):
        seen.append(images.shape[0])
        return [Detections(torch.tensor([[10.0, 10.0, 30.0, 30.0]]), torch.tensor([0.9]),
                           torch.tensor([0])) for _ in range(images.shape[0])]

    loader = build_loader(ds, batch_size=2, workers=0, shuffle=False)
    res = evaluate(predict, loader, gt)
    assert res.skipped == [2, 3]
    assert {r["image_id"] for r in res.results} == {1}
    assert "2 unreadable image(s) left out of the evaluation" in capsys.readouterr().err


def test_a_training_run_with_unreadable_images_finishes_and_counts_them(tmp_path, capsys):
    import damoyolo
    from damoyolo.data.synthetic import synthesize
    synthesize(tmp_path / "d", images=10, seed=0, size=96, workers=1)
    (tmp_path / "d" / "train" / "000003.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (tmp_path / "d" / "val" / "000009.jpg").write_bytes(_bomb_png(20000, 20000))
    damoyolo.train(model="damoyolo-ns", data=tmp_path / "d", epochs=1, batch=4, imgsz=64,
                   device="cpu", workers=0, output=tmp_path / "run", progress=False,
                   overrides=["train.warmup_epochs=0", "train.no_aug_epochs=0",
                              "train.tensorboard=False"])
    err = capsys.readouterr().err
    assert "unreadable image(s) skipped" in err and "000003.jpg" in err
    assert "1 unreadable image(s) left out of the evaluation" in err
    assert (tmp_path / "run" / "last.pt").is_file()
