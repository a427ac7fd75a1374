"""train.cache_images: decoded-once images give exactly the samples of the uncached path."""

import torch

from damoyolo.data import DetectionDataset, load_dataset
from damoyolo.data.synthetic import synthesize


def test_cached_samples_equal_uncached(tmp_path):
    synthesize(tmp_path / "syn", images=10, seed=3, size=160, workers=1)
    idx = load_dataset(tmp_path / "syn", split="train")
    plain = DetectionDataset(idx, (160, 160), train=True, seed=5)
    cached = DetectionDataset(idx, (160, 160), train=True, seed=5)
    nbytes = cached.cache_images()
    assert nbytes == sum(r.height * r.width * 3 for r in idx.records)
    for strong in (True, False):
        plain.set_strong_augment(strong)
        cached.set_strong_augment(strong)
        for i in range(len(idx.records)):
            (a, ta), (b, tb) = plain[i], cached[i]
            assert torch.equal(a, b) and torch.equal(ta["boxes"], tb["boxes"])
    # the cache itself is never modified by the augmentation
    again = DetectionDataset(idx, (160, 160), train=True, seed=5)
    again.cache_images()
    assert all((x == y).all() for x, y in zip(cached._cache, again._cache))
