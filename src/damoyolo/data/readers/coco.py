"""COCO json reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..records import DataReport, DatasetError, DatasetIndex, Record
from ._common import _image_hw, _inside_root, _is_number, _sanitize_boxes, _short


def _find_coco_json(root: Path, split: str | None) -> Path:
    ann = root / "annotations" if (root / "annotations").is_dir() else root
    files = sorted(ann.glob("*.json"))
    if not files:
        raise DatasetError(f"{root}: no annotation json found (looked in {ann})")
    if split is None:
        if len(files) == 1:
            return files[0]
        raise DatasetError(f"{root}: several annotation files ({', '.join(f.name for f in files)});"
                           f" choose one with --split (split=... in Python) or pass the json path")
    exact = [f for f in files if f.stem in (split, f"instances_{split}")]
    if exact:
        return exact[0]
    loose = [f for f in files if split in f.stem]
    if len(loose) == 1:
        return loose[0]
    raise DatasetError(f"{root}: no annotation json for split {split!r} "
                       f"(found {', '.join(f.name for f in files)})")


def _coco_image_root(json_path: Path, file_names: list[str], split: str | None) -> Path:
    base = json_path.parent.parent if json_path.parent.name == "annotations" else json_path.parent
    stem = json_path.stem.replace("instances_", "")
    cands = [base / stem, base / "images" / stem, base / "images", base, json_path.parent]
    if split:
        cands[:0] = [base / split, base / "images" / split]
    probe = file_names[:20]
    best, hits = cands[0], -1
    for c in cands:
        n = sum((c / f).is_file() for f in probe)
        if n > hits:
            best, hits = c, n
    return best


def load_coco(json_path: str | Path, split: str | None = None, image_root: str | Path | None = None
              ) -> DatasetIndex:
    """Read a COCO detection json. Images are looked up next to it (see docs/data.md)."""
    jp = Path(json_path)
    report = DataReport(source=str(jp))
    try:
        data = json.loads(jp.read_bytes())
    except FileNotFoundError:
        raise DatasetError(f"{jp}: no such annotation file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{jp}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{jp}: expected a JSON object with images/annotations/categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{jp}: missing or invalid {key!r} list")

    # categories -> contiguous labels by increasing id
    cat_names: dict[int, str] = {}
    seen_names: set[str] = set()
    for i, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or "name" not in c:
            report.add("malformed", f"{jp}: categories[{i}] needs an integer 'id' and a 'name': {c!r}")
            continue
        if c["id"] in cat_names or str(c["name"]) in seen_names:
            report.add("duplicate_category", f"{jp}: categories[{i}] id={c['id']} name={c['name']!r}")
            continue
        cat_names[c["id"]] = str(c["name"])
        seen_names.add(str(c["name"]))
    category_ids = sorted(cat_names)
    label_of = {cid: i for i, cid in enumerate(category_ids)}

    images: dict[int, dict] = {}
    for i, im in enumerate(data["images"]):
        if not isinstance(im, dict) or not isinstance(im.get("id"), int) or not im.get("file_name"):
            report.add("malformed", f"{jp}: images[{i}] needs an integer 'id' and 'file_name': {im!r}")
            continue
        if im["id"] in images:
            report.add("duplicate_image_id", f"{jp}: images[{i}] id={im['id']} "
                                             f"({im['file_name']}, first: {images[im['id']]['file_name']})")
            continue
        images[im["id"]] = im
    root = Path(image_root) if image_root else _coco_image_root(
        jp, [str(im["file_name"]) for im in images.values()], split)

    per_image: dict[int, list[tuple[list[float], int]]] = {k: [] for k in images}
    ann_ids: set = set()
    for i, a in enumerate(data["annotations"]):
        rec = f"{jp}: annotations[{i}] (id={a.get('id') if isinstance(a, dict) else '?'})"
        if not isinstance(a, dict):
            report.add("malformed", f"{rec}: not an object")
            continue
        if "id" in a:
            if not isinstance(a["id"], (int, str)) or isinstance(a["id"], bool):
                report.add("malformed", f"{rec}: id must be an integer, got {_short(a['id'])}")
                continue
            if a["id"] in ann_ids:
                report.add("duplicate_annotation_id", f"{rec}: id {a['id']} used twice")
                continue
            ann_ids.add(a["id"])
        if not isinstance(a.get("image_id"), int) or isinstance(a.get("image_id"), bool):
            report.add("malformed", f"{rec}: image_id must be an integer, got "
                                    f"{_short(a.get('image_id'))}")
            continue
        if not isinstance(a.get("category_id"), int) or isinstance(a.get("category_id"), bool):
            report.add("malformed", f"{rec}: category_id must be an integer, got "
                                    f"{_short(a.get('category_id'))}")
            continue
        if a.get("image_id") not in images:
            report.add("unknown_image", f"{rec}: image_id {a.get('image_id')!r} not in 'images'")
            continue
        fname = images[a["image_id"]]["file_name"]
        if a.get("category_id") not in label_of:
            report.add("unknown_category", f"{rec} in image {fname}: category_id "
                                           f"{a.get('category_id')!r} not in 'categories' "
                                           f"(declared: {category_ids[:20]})")
            continue
        bbox = a.get("bbox")
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(map(_is_number, bbox))):
            report.add("malformed", f"{rec} in image {fname}: bbox must be 4 numbers [x, y, w, h], "
                                    f"got {bbox!r}")
            continue
        if a.get("iscrowd", 0):
            report.add("crowd_skipped", f"{rec} in image {fname}")
            continue
        x, y, w, h = (float(v) for v in bbox)
        per_image[a["image_id"]].append(([x, y, x + w, y + h], label_of[a["category_id"]]))

    records = []
    for img_id in sorted(images):
        im = images[img_id]
        path = root / str(im["file_name"])
        if not _inside_root(str(im["file_name"])):
            report.add("malformed", f"{jp}: image id {img_id}: file_name {im['file_name']!r} "
                                    f"points outside the image folder {root}")
            continue
        h, w = im.get("height"), im.get("width")
        declared = (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0)
        hw = _image_hw((h, w) if declared else None, path, f"{path} (image id {img_id})",
                       report, "no size in json and the file is unreadable")
        if hw is None:
            continue
        h, w = hw
        anns = per_image[img_id]
        boxes = np.array([b for b, _ in anns], dtype=np.float64).reshape(-1, 4)
        labels = np.array([lab for _, lab in anns], dtype=np.int64)
        boxes, labels = _sanitize_boxes(boxes, labels, h, w, f"{path} (image id {img_id})", report)
        if len(labels) == 0:
            report.add("negative_image", f"{path} (image id {img_id})")
        records.append(Record(str(path), boxes, labels, int(img_id), int(h), int(w)))
    names = [cat_names[c] for c in category_ids]
    return DatasetIndex(records, names, category_ids, str(jp), "coco", report)
