import json

import cv2
import numpy as np
import pytest
import torch

torch.set_num_threads(1)


def write_img(path, h=60, w=80, value=100, channels=3):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w, channels) if channels else (h, w), value, np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


@pytest.fixture
def coco_dir(tmp_path):
    """Tiny COCO dataset with non-contiguous, out-of-order category ids."""
    root = tmp_path / "coco"
    for i in (1, 2, 3):
        write_img(root / "train" / f"{i}.jpg")
    data = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "height": 60, "width": 80} for i in (1, 2, 3)],
        "categories": [{"id": 42, "name": "cat"}, {"id": 7, "name": "dog"}, {"id": 13, "name": "eel"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 42, "bbox": [10, 10, 20, 20], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 7, "bbox": [30, 5, 10, 40], "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 13, "bbox": [0, 0, 5, 5], "iscrowd": 0},
        ],
    }
    (root / "annotations").mkdir()
    (root / "annotations" / "train.json").write_text(json.dumps(data))
    return root
