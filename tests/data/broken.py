"""Builder of a deliberately broken COCO dataset (used by the tests and the docs)."""

import json

import cv2
import numpy as np


def make_broken_coco(root):
    """One fault of every image/annotation category; returns the json path."""
    img_dir = root / "images"
    img_dir.mkdir(parents=True)
    ok = np.full((60, 80, 3), 120, np.uint8)
    cv2.imwrite(str(img_dir / "good.jpg"), ok)
    (img_dir / "empty.jpg").write_bytes(b"")
    full = cv2.imencode(".jpg", ok)[1].tobytes()
    (img_dir / "truncated.jpg").write_bytes(full[: len(full) // 2])
    png = cv2.imencode(".png", ok)[1].tobytes()
    (img_dir / "truncated.png").write_bytes(png[:-20])
    (img_dir / "garbage.jpg").write_bytes(b"\xff\xd8not an image at all\xff\xd9")
    cv2.imwrite(str(img_dir / "gray.png"), ok[:, :, 0])
    cv2.imwrite(str(img_dir / "rgba.png"), np.dstack([ok, ok[:, :, :1]]))
    cv2.imwrite(str(img_dir / "deep16.png"), ok.astype(np.uint16) * 257)
    cv2.imwrite(str(img_dir / "wrongsize.jpg"), np.zeros((30, 40, 3), np.uint8))
    names = ["good.jpg", "missing.jpg", "empty.jpg", "truncated.jpg", "truncated.png", "garbage.jpg",
             "gray.png", "rgba.png", "deep16.png", "wrongsize.jpg", "negative.jpg"]
    cv2.imwrite(str(img_dir / "negative.jpg"), ok)
    images = [{"id": i + 1, "file_name": n, "height": 60, "width": 80} for i, n in enumerate(names)]
    images.append({"id": 1, "file_name": "dupe.jpg", "height": 60, "width": 80})
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [60, 40, 40, 40]},  # outside -> clipped
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 10]},  # zero area
        {"id": 4, "image_id": 1, "category_id": 77, "bbox": [5, 5, 5, 5]},  # unknown category
        {"id": 4, "image_id": 7, "category_id": 1, "bbox": [5, 5, 5, 5]},  # duplicate ann id
        {"id": 6, "image_id": 500, "category_id": 1, "bbox": [5, 5, 5, 5]},  # unknown image
        {"id": 7, "image_id": 8, "category_id": 2, "bbox": [5, 5, 5]},  # malformed bbox
        {"id": 8, "image_id": 9, "category_id": 2, "bbox": [1, 1, 9, 9]},
        {"id": 9, "image_id": 2, "category_id": 2, "bbox": [1, 1, 9, 9]},
    ]
    cats = [{"id": 1, "name": "apple"}, {"id": 2, "name": "pear"}]
    p = root / "broken.json"
    p.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return p
