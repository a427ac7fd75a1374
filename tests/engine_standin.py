"""Shared test helpers: a tiny stand-in for ``damoyolo.data`` (same item / loader
signatures) for the engine tests, and a calibrated synthetic model for the export and
evaluation tests."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset


class RectDataset(Dataset):
    """Bright rectangles on dark noise; class = which third of the image holds the centre.

    ``empty`` lists indices whose images have no object.  Items follow the data contract:
    image float32 (3, H, W) 0..255, target dict(boxes (N, 4) xyxy float32, labels (N,) int64,
    image_id, orig_size).
    """

    def __init__(self, n: int = 8, size: int = 64, seed: int = 0, empty: tuple[int, ...] = ()):
        self.size, self.items = size, []
        g = torch.Generator().manual_seed(seed)
        for i in range(n):
            img = torch.rand(3, size, size, generator=g) * 40
            boxes, labels = torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)
            if i not in empty:
                wh = torch.randint(14, 30, (2,), generator=g).float()
                xy = torch.rand(2, generator=g) * (size - wh)
                b = torch.cat([xy, xy + wh]).round()
                x1, y1, x2, y2 = (int(v) for v in b)
                img[:, y1:y2, x1:x2] = 220
                boxes = b.view(1, 4)
                labels = torch.tensor([min(int((x1 + x2) / 2 / size * 3), 2)])
            self.items.append((img, {"boxes": boxes, "labels": labels, "image_id": i + 1,
                                     "orig_size": (size, size)}))
        self.strong = True

    def set_strong_augment(self, enabled: bool) -> None:
        self.strong = enabled

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]

    def to_coco_dict(self) -> dict:
        anns = []
        for img, t in self.items:
            for b, lab in zip(t["boxes"].tolist(), t["labels"].tolist()):
                anns.append({"id": len(anns) + 1, "image_id": t["image_id"],
                             "category_id": lab + 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                             "area": (b[2] - b[0]) * (b[3] - b[1]), "iscrowd": 0})
        return {"images": [{"id": t["image_id"], "width": self.size, "height": self.size,
                            "file_name": f"{t['image_id']}.jpg"} for _, t in self.items],
                "annotations": anns,
                "categories": [{"id": k + 1, "name": n} for k, n in enumerate("abc")]}


def collate(batch):
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


def build_loader(dataset, batch_size, workers, shuffle, seed, drop_last=False, sampler=None):
    g = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle if sampler is None else False,
                      sampler=sampler, num_workers=workers, collate_fn=collate,
                      drop_last=drop_last, generator=g)


# ------------------------------------------------------------------ shared test fixtures

NAMES = ["a", "b", "c"]


def tiny_model(preset: str = "damoyolo-ns", seed: int = 0, class_names=NAMES):
    """A preset seeded with ``seed``, its input size set to 64 (the stand-in's images)."""
    import dataclasses

    from damoyolo import build_model
    torch.manual_seed(seed)
    m = build_model(preset, class_names=class_names)
    m.cfg = dataclasses.replace(m.cfg, input_size=(64, 64))
    return m


def tiny_cfg(out_dir, **kw):
    """A short CPU TrainConfig writing to ``out_dir``; ``kw`` overrides any field."""
    from damoyolo.config import TrainConfig
    base = dict(epochs=2, batch_size=4, nominal_batch=4, base_lr_per_img=0.01 / 64 * 4,
                warmup_epochs=1, no_aug_epochs=1, workers=0, output=str(out_dir),
                eval_interval=0, tensorboard=False, seed=7)
    base.update(kw)
    return TrainConfig(**base)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank: int, world: int, port: int) -> None:
    """The environment torchrun gives a worker (gloo on CPU), one torch thread."""
    import os
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)


def spawn_two_ranks(worker, out_dir) -> tuple[dict, dict]:
    """Run ``worker(rank, world, port, out_dir)`` in 2 processes; each saves
    ``out_dir/rank{r}.pt``.  Returns both files' contents (skips without torch.distributed)."""
    import pytest
    import torch.multiprocessing as mp
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")
    mp.spawn(worker, args=(2, _free_port(), str(out_dir)), nprocs=2, join=True)
    return tuple(torch.load(f"{out_dir}/rank{r}.pt", weights_only=False) for r in (0, 1))


def scene_batch(hw=(128, 128), seeds=(1, 2)) -> torch.Tensor:
    """A batch of generated scenes (shapes on texture), preprocessed like real images."""
    from damoyolo.cli.demo import _scene
    from damoyolo.preprocess import preprocess_batch
    return preprocess_batch([_scene(s, 256) for s in seeds], hw)[0]


def calibrated_synthetic_ns(root, images: int, seed: int, hw: tuple[int, int]):
    """A synthetic dataset in ``root / "synth"`` (128 px, half val) and a damoyolo-ns of its
    classes at input ``hw``, calibrated on the val images so that it detects confidently.

    Returns ``(data, val_index, val_images, x, model)``; ``x`` is the preprocessed val batch.
    """
    import dataclasses

    from damoyolo.data import load_dataset
    from damoyolo.data.synthetic import CLASSES, synthesize
    from damoyolo.models.factory import calibrated_model
    from damoyolo.preprocess import preprocess_batch, read_image

    data = root / "synth"
    synthesize(data, images=images, seed=seed, size=128, val_fraction=0.5, workers=1)
    idx = load_dataset(data, split="val")
    imgs = [read_image(r.path) for r in idx.records]
    x = preprocess_batch(imgs, hw)[0]
    m = calibrated_model("damoyolo-ns", x, class_names=list(CLASSES))
    m.cfg = dataclasses.replace(m.cfg, input_size=hw)
    return data, idx, imgs, x, m
