import cv2
import numpy as np
import pytest
import torch

from damoyolo.config import AugmentConfig
from damoyolo.data import (DatasetIndex, DetectionDataset, Record, augment_config_for, build_loader,
                           collate)
from damoyolo.data.sada import SADA, gaussian_map
from damoyolo.data.transforms import hflip, mixup, mosaic, random_affine, resize_image
from damoyolo.preprocess import preprocess_image, read_image


def rect_image(h, w, box, channel=0):
    img = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2, channel] = 255
    return img, np.array([box], np.float32), np.array([0], np.int64)


def empty_image(h, w):
    return np.zeros((h, w, 3), np.uint8), np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)


def mask_extent(img, channel=0, thr=127):
    ys, xs = np.nonzero(img[..., channel] > thr)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


@pytest.mark.parametrize("seed", range(12))
def test_mosaic_affine_keep_boxes_exact(seed):
    rng = np.random.default_rng(seed)
    j = seed % 4
    samples = []
    for k in range(4):
        h, w = int(rng.integers(80, 200)), int(rng.integers(80, 200))
        if k == j:
            x1, y1 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
            samples.append(rect_image(h, w, (x1, y1, x1 + int(rng.integers(20, 40)),
                                             y1 + int(rng.integers(20, 40)))))
        else:
            samples.append(empty_image(h, w))
    canvas, boxes, labels = mosaic(samples, (160, 192), keep_ratio=bool(seed % 2), rng=rng, pad_value=0)
    assert canvas.shape == (320, 384, 3) and len(boxes) == 1
    np.testing.assert_allclose(boxes[0], mask_extent(canvas), atol=1.01)
    img, boxes, labels = random_affine(canvas, boxes, labels, (160, 192), degrees=30, translate=0.2,
                                       scale_range=(0.8, 1.6), shear=5, rng=rng, pad_value=0)
    assert img.shape == (160, 192, 3)
    ext = mask_extent(img)
    if len(boxes):
        assert ext is not None
        np.testing.assert_allclose(boxes[0], ext, atol=1.6)
    else:  # dropped only when (almost) nothing of the rectangle is left
        assert ext is None or (ext[2] - ext[0]) * (ext[3] - ext[1]) < 0.2 * 40 * 40 * 1.6 ** 2


@pytest.mark.parametrize("seed", range(6))
def test_resize_flip_mixup_exact(seed):
    rng = np.random.default_rng(seed)
    img, boxes, labels = rect_image(90, 150, (20, 30, 70, 60))
    for keep in (True, False):
        r, b = resize_image(img, boxes, (128, 96), keep)
        np.testing.assert_allclose(b[0], mask_extent(r), atol=1.01)
    f, b = hflip(img, boxes)
    np.testing.assert_allclose(b[0], mask_extent(f), atol=1e-4)
    base, bb, bl = rect_image(128, 128, (10, 10, 50, 40), channel=0)
    other, ob, ol = rect_image(100, 140, (60, 40, 120, 90), channel=1)
    out, mb, ml = mixup(base, bb, bl, other, ob, ol, (128, 128), (0.5, 1.5), rng, pad_value=0)
    assert len(mb) == 2 and ml.tolist() == [0, 0]
    np.testing.assert_allclose(mb[0], mask_extent(out, 0, 60), atol=1e-4)
    ext = mask_extent(out, 1, 60)
    if ext is not None and (mb[1, 2] - mb[1, 0]) > 2 and (mb[1, 3] - mb[1, 1]) > 2:
        np.testing.assert_allclose(mb[1], ext, atol=1.6)


def _rect_index(tmp_path, n=6, empty_every=3):
    recs = []
    rng = np.random.default_rng(0)
    for i in range(n):
        h, w = int(rng.integers(100, 180)), int(rng.integers(100, 180))
        if i % empty_every == 0:
            img, b, lab = empty_image(h, w)
        else:
            img, b, lab = rect_image(h, w, (10, 12, 10 + int(rng.integers(30, 60)), 12 + int(rng.integers(30, 60))))
        p = tmp_path / f"{i}.png"
        cv2.imwrite(str(p), img[:, :, ::-1])
        recs.append(Record(str(p), b, lab, i + 1, h, w))
    return DatasetIndex(recs, ["rect"], [1], str(tmp_path))


def test_val_is_inference_preprocessing(tmp_path):
    idx = _rect_index(tmp_path)
    ds = DetectionDataset(idx, (96, 128), train=False)
    for i in range(len(ds)):
        img, t = ds[i]
        ref, meta = preprocess_image(read_image(idx.records[i].path), (96, 128))
        assert torch.equal(img, ref)
        assert t["orig_size"] == (idx.records[i].height, idx.records[i].width)
        sx, sy = meta.scale_xy
        np.testing.assert_allclose(t["boxes"].numpy() * [sx, sy, sx, sy], idx.records[i].boxes, atol=1e-4)


def test_no_aug_boxes_exact(tmp_path):
    idx = _rect_index(tmp_path, empty_every=100)
    for keep in (True, False):
        ds = DetectionDataset(idx, (96, 128), train=True, aug=AugmentConfig(keep_ratio=keep), seed=1)
        ds.set_strong_augment(False)
        for i in range(len(ds)):
            img, t = ds[i]
            assert img.shape == (3, 96, 128)
            if not len(idx.records[i].labels):
                continue
            ext = mask_extent(img.permute(1, 2, 0).numpy())
            np.testing.assert_allclose(t["boxes"][0].numpy(), ext, atol=1.01)


def test_empty_labels_through_full_pipeline(tmp_path):
    idx = _rect_index(tmp_path, empty_every=1)  # every image empty
    aug = augment_config_for("damoyolo-s", mixup_prob=1.0)
    ds = DetectionDataset(idx, (64, 64), train=True, aug=aug, seed=0)
    for i in range(len(ds)):
        img, t = ds[i]
        assert img.shape == (3, 64, 64) and t["boxes"].shape == (0, 4) and t["labels"].shape == (0,)
    s = SADA()
    out, b, lab = s(np.full((64, 64, 3), 100, np.float32), np.zeros((0, 4), np.float32),
                    np.zeros(0, np.int64), np.random.default_rng(0))
    assert out.shape == (64, 64, 3) and len(b) == 0


def test_full_pipeline_mixed_and_deterministic(tmp_path):
    idx = _rect_index(tmp_path)
    aug = augment_config_for("damoyolo-t", mixup_prob=0.5)
    a = DetectionDataset(idx, (96, 96), train=True, aug=aug, seed=5)
    b = DetectionDataset(idx, (96, 96), train=True, aug=aug, seed=5)
    c = DetectionDataset(idx, (96, 96), train=True, aug=aug, seed=6)
    diff = False
    for i in range(len(a)):
        (ia, ta), (ib, tb), (ic, _) = a[i], b[i], c[i]
        assert ia.dtype == torch.float32 and ia.shape == (3, 96, 96)
        assert 0 <= float(ia.min()) and float(ia.max()) <= 255
        assert torch.equal(ia, ib) and torch.equal(ta["boxes"], tb["boxes"])
        b_ = ta["boxes"]
        assert ((b_[:, 2:] > b_[:, :2]).all() and (b_ >= 0).all() and (b_ <= 96).all())
        diff |= not torch.equal(ia, ic)
    assert diff
    a.set_epoch(1)
    assert not all(torch.equal(a[i][0], b[i][0]) for i in range(len(a)))


def test_loader_deterministic_across_workers(tmp_path):
    idx = _rect_index(tmp_path)
    ds = DetectionDataset(idx, (64, 64), train=True, aug=augment_config_for("t"), seed=3)
    runs = []
    for workers in (0, 2):
        loader = build_loader(ds, batch_size=4, workers=workers, shuffle=True, seed=11)
        loader.set_epoch(2)
        runs.append([(im.clone(), [t["image_id"] for t in ts]) for im, ts in loader])
    assert len(runs[0]) == 2
    for (i0, ids0), (i1, ids1) in zip(*runs):
        assert ids0 == ids1 and torch.equal(i0, i1)


def test_collate_pads_to_multiple_of_32():
    batch = [(torch.ones(3, 50, 70), {"boxes": torch.zeros(0, 4)}), (torch.ones(3, 64, 40), {})]
    imgs, targets = collate(batch)
    assert imgs.shape == (2, 3, 64, 96) and len(targets) == 2
    assert imgs[0, :, 50:].abs().sum() == 0 and imgs[1, :, :, 40:].abs().sum() == 0


def test_gaussian_map_peak_and_spread():
    g = gaussian_map((100, 100), np.array([[40, 20, 60, 80]], np.float32))
    r, c = np.unravel_index(g.argmax(), g.shape)
    assert (r, c) == (50, 50) and abs(g.max() - 1) < 1e-6
    # std along rows (box height 60) is 3x the std along columns (box width 20)
    assert g[50, 50 + 10] < g[50 + 10, 50]


def test_sada_translate_adds_consistent_box():
    s = SADA(box_prob=1.0)
    # force a translateX policy at full strength
    from damoyolo.data.sada import SubPolicy
    s.policies = [SubPolicy("Color", 0.0, 0, "translateX", 1.0, 4)]
    s.prob_ratios = (1, 1, 1)
    s.box_prob = 1.0
    img = np.zeros((200, 200, 3), np.float32)
    img[80:120, 80:120] = 255
    out, b, lab = s(img, np.array([[80, 80, 120, 120]], np.float32), np.array([3]),
                    np.random.default_rng(0))
    assert len(b) == 2 and lab.tolist() == [3, 3]
    dx = b[1, 0] - b[0, 0]
    assert abs(abs(dx) - 48) < 1e-4
    # the copy is drawn where its box is (centre pixel bright)
    cx, cy = int((b[1, 0] + b[1, 2]) / 2), int((b[1, 1] + b[1, 3]) / 2)
    assert out[cy, cx, 0] > 200
