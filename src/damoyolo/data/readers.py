"""Dataset readers: COCO json (primary), YOLO txt and Pascal VOC xml -> :class:`DatasetIndex`.

Every reader collects faults into a :class:`DataReport` instead of stopping at the first
one, so ``damoyolo data check`` can list them all; :func:`load_dataset` then refuses a
dataset with errors (``strict=True``) and keeps the counted warnings for the summary.

Category ids:
- COCO: the json's category ids; contiguous labels follow the ids in increasing order.
- YOLO: the class index of the label files (``0..C-1``), names from the names file / yaml.
- VOC: ``1..C``, classes in the order of a ``labels.txt``/``classes.txt`` in the dataset root
  if present, else sorted by name over all annotation files.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..imageheader import max_image_pixels
from ..preprocess import IMAGE_SUFFIXES
from .imageinfo import image_size
from .records import DataReport, DatasetError, DatasetIndex, Record

__all__ = ["load_dataset", "load_coco", "load_yolo", "load_voc", "detect_format"]


# ----------------------------------------------------------------------------- helpers

def _size_from_file(path: Path, report: DataReport, message: str) -> tuple[int, int] | None:
    """(h, w) read from the image file when the annotation has none; None after reporting
    the file as missing or corrupt (``message`` names the record)."""
    hw = image_size(path)
    if hw is None:
        report.add("missing_image" if not path.is_file() else "corrupt_image", message)
    return hw


def _oversized(h: int, w: int, where: str, report: DataReport) -> bool:
    """True (and counted) when an image of h x w pixels is over the pixel limit: skipped."""
    if h * w <= max_image_pixels():
        return False
    report.add("oversized_image", f"{where}: {w}x{h} pixels")
    return True


def _sanitize_boxes(boxes: np.ndarray, labels: np.ndarray, h: int, w: int, where: str,
                    report: DataReport) -> tuple[np.ndarray, np.ndarray]:
    """Clip boxes to the image (counted) and drop zero/negative-area boxes (counted)."""
    if len(boxes) == 0:
        return boxes.reshape(0, 4).astype(np.float32), labels.astype(np.int64)
    boxes = boxes.astype(np.float64)
    bad = ~np.isfinite(boxes).all(1)
    boxes[bad] = 0.0
    clipped = boxes.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, w)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, h)
    moved = (np.abs(clipped - boxes) > 1e-3).any(1)
    area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    degenerate = (area <= 0) | bad | (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    for i in np.nonzero(moved & ~degenerate)[0]:
        report.add("box_clipped", f"{where} box {i}: {np.round(boxes[i], 2).tolist()} -> "
                                  f"{np.round(clipped[i], 2).tolist()} (image {w}x{h})")
    for i in np.nonzero(degenerate)[0]:
        report.add("box_degenerate", f"{where} box {i}: {np.round(boxes[i], 2).tolist()}")
    keep = ~degenerate
    return clipped[keep].astype(np.float32), labels[keep].astype(np.int64)


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _inside_root(name: str) -> bool:
    """Whether a relative file name from an annotation file stays inside the folder it is
    joined to: not absolute and no ``..`` part.  Judged on the name, so images that are
    symbolic links (split folders made with ``ln -s``, DVC, git-annex) are fine."""
    from pathlib import PurePosixPath, PureWindowsPath
    for pure in (PurePosixPath(name), PureWindowsPath(name)):
        if pure.is_absolute() or pure.anchor or ".." in pure.parts:
            return False
    return True


def _read_text(p: Path, what: str) -> str:
    """A text file as UTF-8; :class:`DatasetError` naming the file when it is not."""
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{p}: {what} is not UTF-8 text (byte {e.start}: "
                           f"{e.object[e.start:e.start + 1]!r})") from None


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ----------------------------------------------------------------------------- COCO

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
        if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
            hw = _size_from_file(path, report,
                                 f"{path} (image id {img_id}): no size in json and the file "
                                 f"is unreadable")
            if hw is None:
                continue
            h, w = hw
        if _oversized(h, w, f"{path} (image id {img_id})", report):
            continue
        anns = per_image[img_id]
        boxes = np.array([b for b, _ in anns], dtype=np.float64).reshape(-1, 4)
        labels = np.array([lab for _, lab in anns], dtype=np.int64)
        boxes, labels = _sanitize_boxes(boxes, labels, h, w, f"{path} (image id {img_id})", report)
        if len(labels) == 0:
            report.add("negative_image", f"{path} (image id {img_id})")
        records.append(Record(str(path), boxes, labels, int(img_id), int(h), int(w)))
    names = [cat_names[c] for c in category_ids]
    return DatasetIndex(records, names, category_ids, str(jp), "coco", report)


# ----------------------------------------------------------------------------- YOLO

def _read_names_file(p: Path) -> list[str]:
    return [ln.strip() for ln in _read_text(p, "the class-names file").splitlines() if ln.strip()]


def _parse_yaml_names(p: Path) -> tuple[list[str], dict]:
    text = _read_text(p, "the dataset YAML")
    try:
        import yaml  # optional
        data = yaml.safe_load(text) or {}
    except ImportError:
        data = _mini_yaml(text)
    except Exception as e:  # yaml.YAMLError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DatasetError(f"{p}: invalid YAML: {first}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{p}: expected a mapping with a 'names' key, got a YAML "
                           f"{type(data).__name__}")
    names = data.get("names")
    if isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise DatasetError(f"{p}: 'names' as a mapping must map class index -> name "
                               f"(0: cat, 1: dog), got keys {_short(list(names)[:5])}") from None
        if keys != list(range(len(keys))):
            raise DatasetError(f"{p}: 'names' keys must be 0..C-1, got {keys}")
        names = [str(names[k] if k in names else names[str(k)]) for k in keys]
    if not isinstance(names, list) or not names:
        raise DatasetError(f"{p}: needs a 'names' list (or 0..C-1 mapping) of class names")
    return [str(n) for n in names], data


def _mini_yaml(text: str) -> dict:
    """Tiny subset parser (``key: value``, ``names: [a, b]`` and an indented ``i: name`` block)."""
    out: dict = {}
    cur = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if raw[:1] in (" ", "\t") and cur is not None:
            s = line.strip()
            if s.startswith("- "):
                out.setdefault(cur, []).append(s[2:].strip().strip("'\""))
            elif ":" in s:
                k, v = s.split(":", 1)
                if not isinstance(out.get(cur), dict):
                    out[cur] = {}
                out[cur][k.strip()] = v.strip().strip("'\"")
            continue
        k, v = line.split(":", 1) if ":" in line else (line, "")
        cur, v = k.strip(), v.strip()
        if v.startswith("[") and v.endswith("]"):
            out[cur] = [x.strip().strip("'\"") for x in v[1:-1].split(",") if x.strip()]
        elif v:
            out[cur] = v.strip("'\"")
    return out


def _yolo_split_dirs(root: Path, split: str | None, data: dict, yaml_path: Path | None
                     ) -> tuple[Path, Path]:
    """(images folder, labels folder) of ``split``, honouring a dataset yaml's ``path`` (the
    dataset root, relative to the yaml's folder) and ``<split>`` keys (an images folder
    relative to that root); labels sit where the last ``images`` component of the images
    folder reads ``labels`` (beside the images when there is none)."""
    base = root
    if data.get("path"):
        base = Path(str(data["path"])).expanduser()
        if not base.is_absolute():
            base = root / base
    entry = data.get(split) if split is not None else None
    if entry is None:
        img_dir, lbl_dir = base / "images", base / "labels"
        if split is not None:
            img_dir, lbl_dir = img_dir / split, lbl_dir / split
        return img_dir, lbl_dir
    if not isinstance(entry, str) or Path(entry).suffix.lower() == ".txt":
        raise DatasetError(f"{yaml_path}: '{split}: {entry}' is not supported: give the "
                           f"split's images folder (relative to the dataset root {base})")
    img_dir = Path(entry).expanduser()
    img_dir = img_dir if img_dir.is_absolute() else base / img_dir
    parts = list(img_dir.parts)
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        parts[i] = "labels"
    return img_dir, Path(*parts)


def load_yolo(root: str | Path, split: str | None = None) -> DatasetIndex:
    """Read a YOLO txt dataset: ``images/[split/]*.jpg`` + ``labels/[split/]*.txt``.

    root: the dataset folder, or its dataset yaml (any name).  Class names come from the
    yaml (``data.yaml``/``dataset.yaml`` in the folder: ``names``) or a names file
    (``classes.txt``, ``names.txt``, ``obj.names``, ``*.names``) in the root.  The yaml's
    ``path`` (dataset root, relative to the yaml's folder) and ``train``/``val``/``test``
    keys (images folder of that split, relative to the root; labels where its ``images``
    component reads ``labels``) are honoured; list files (``.txt``) are refused.  Each
    label line is ``class cx cy w h`` normalised to [0, 1]; polygon lines
    (``class x1 y1 x2 y2 ...``) are converted to their bounding box.
    """
    root = Path(root)
    yaml_path = None
    if root.is_file():
        yaml_path, root = root, root.parent
    else:
        yaml_path = next((root / c for c in ("data.yaml", "dataset.yaml", "data.yml",
                                             "dataset.yml") if (root / c).is_file()), None)
    report = DataReport(source=str(yaml_path or root))
    names, data = None, {}
    if yaml_path is not None:
        names, data = _parse_yaml_names(yaml_path)
    if names is None:
        files = [root / n for n in ("classes.txt", "names.txt", "obj.names")] + sorted(root.glob("*.names"))
        for f in files:
            if f.is_file():
                names = _read_names_file(f)
                break
    if not names:
        raise DatasetError(f"{root}: YOLO dataset needs class names: a data.yaml with 'names' "
                           f"or a classes.txt / names.txt / *.names file")
    img_dir, lbl_dir = _yolo_split_dirs(root, split, data, yaml_path)
    if not img_dir.is_dir():
        raise DatasetError(f"{root}: no image folder {img_dir}")
    imgs = sorted(p for p in img_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    seen_labels = set()
    records = []
    for img_id, ip in enumerate(imgs):
        rel = ip.relative_to(img_dir).with_suffix(".txt")
        lp = lbl_dir / rel
        seen_labels.add(lp)
        hw = image_size(ip)
        if hw is None:
            report.add("corrupt_image", f"{ip}: cannot read the image size")
            continue
        h, w = hw
        if _oversized(h, w, str(ip), report):
            continue
        boxes, labels = [], []
        if lp.is_file():
            for ln_no, line in enumerate(_read_text(lp, "the label file").splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                where = f"{lp}:{ln_no}"
                try:
                    vals = [float(v) for v in parts]
                except ValueError:
                    report.add("malformed", f"{where}: non-numeric value in {line.strip()!r}")
                    continue
                if not all(math.isfinite(v) for v in vals):
                    report.add("malformed", f"{where}: non-finite value in {line.strip()!r}")
                    continue
                if len(vals) < 5 or (len(vals) > 5 and len(vals) % 2 == 0):
                    report.add("malformed", f"{where}: expected 'class cx cy w h' (or a polygon), "
                                            f"got {len(vals)} values")
                    continue
                c = vals[0]
                if not c.is_integer() or not 0 <= c < len(names):
                    report.add("unknown_category", f"{where}: class {parts[0]} not in 0..{len(names) - 1}")
                    continue
                if len(vals) == 5:
                    cx, cy, bw, bh = vals[1:]
                    box = [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
                else:
                    xs, ys = np.array(vals[1::2]) * w, np.array(vals[2::2]) * h
                    box = [xs.min(), ys.min(), xs.max(), ys.max()]
                boxes.append(box)
                labels.append(int(c))
        b, lab = _sanitize_boxes(np.array(boxes, dtype=np.float64).reshape(-1, 4),
                                 np.array(labels, dtype=np.int64), h, w, str(lp), report)
        if len(lab) == 0:
            report.add("negative_image", f"{ip}")
        records.append(Record(str(ip), b, lab, img_id, h, w))
    if lbl_dir.is_dir():
        for lp in sorted(lbl_dir.rglob("*.txt")):
            if lp not in seen_labels:
                report.add("label_without_image", str(lp))
    return DatasetIndex(records, names, list(range(len(names))), str(root), "yolo", report)


# ----------------------------------------------------------------------------- VOC

def load_voc(root: str | Path, split: str | None = None) -> DatasetIndex:
    """Read Pascal VOC: ``Annotations/*.xml`` + ``JPEGImages/`` [+ ``ImageSets/Main/<split>.txt``].

    VOC pixel coordinates are 1-based inclusive; they become continuous ``xyxy`` as
    ``(xmin - 1, ymin - 1, xmax, ymax)``.  ``difficult`` objects are skipped (counted).
    """
    root = Path(root)
    report = DataReport(source=str(root))
    ann_dir, img_dir = root / "Annotations", root / "JPEGImages"
    if not ann_dir.is_dir():
        raise DatasetError(f"{root}: no Annotations/ folder")
    if split is not None:
        lst = root / "ImageSets" / "Main" / f"{split}.txt"
        if not lst.is_file():
            raise DatasetError(f"{root}: no image list {lst} for split {split!r}")
        stems = [ln.split()[0] for ln in _read_text(lst, "the image list").splitlines()
                 if ln.strip()]
        bad = [s for s in stems if not _inside_root(s)]
        if bad:
            raise DatasetError(f"{lst}: image name {bad[0]!r} points outside {ann_dir}")
        xmls = [ann_dir / f"{s}.xml" for s in stems]
    else:
        xmls = sorted(ann_dir.glob("*.xml"))
    parsed = []
    for xp in xmls:
        try:
            tree = ET.parse(xp).getroot()
        except FileNotFoundError:
            report.add("malformed", f"{xp}: listed in the split but missing")
            continue
        except ET.ParseError as e:
            report.add("malformed", f"{xp}: invalid XML: {e}")
            continue
        except UnicodeDecodeError as e:
            report.add("malformed", f"{xp}: not readable text ({e.reason})")
            continue
        parsed.append((xp, tree))
    names_file = next((root / n for n in ("labels.txt", "classes.txt") if (root / n).is_file()), None)
    if names_file is not None:
        names = _read_names_file(names_file)
    else:
        names = sorted({(o.findtext("name") or "").strip() for _, t in parsed
                        for o in t.iter("object")} - {""})
    label_of = {n: i for i, n in enumerate(names)}
    records = []
    for img_id, (xp, tree) in enumerate(parsed):
        fname = tree.findtext("filename") or f"{xp.stem}.jpg"
        ip = img_dir / fname
        if not _inside_root(fname):
            report.add("malformed", f"{xp}: <filename> {fname!r} points outside {img_dir}")
            continue
        if not ip.is_file() and (img_dir / f"{xp.stem}.jpg").is_file():
            ip = img_dir / f"{xp.stem}.jpg"
        try:
            h = int(float(tree.findtext("size/height")))
            w = int(float(tree.findtext("size/width")))
            assert h > 0 and w > 0
        except (TypeError, ValueError, OverflowError, AssertionError):  # absent, nan, inf
            hw = _size_from_file(ip, report, f"{ip} ({xp.name}): no valid <size> and the image "
                                             f"is unreadable")
            if hw is None:
                continue
            h, w = hw
        if _oversized(h, w, f"{ip} ({xp.name})", report):
            continue
        boxes, labels = [], []
        for k, o in enumerate(tree.iter("object")):
            name = (o.findtext("name") or "").strip()
            where = f"{xp} object {k} ({name!r})"
            if name not in label_of:
                report.add("unknown_category", f"{where}: class not in {names_file}")
                continue
            if (o.findtext("difficult") or "0").strip() == "1":
                report.add("difficult_skipped", where)
                continue
            try:
                bb = [float(o.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")]
            except (TypeError, ValueError):
                report.add("malformed", f"{where}: bndbox needs numeric xmin/ymin/xmax/ymax")
                continue
            boxes.append([bb[0] - 1, bb[1] - 1, bb[2], bb[3]])
            labels.append(label_of[name])
        b, lab = _sanitize_boxes(np.array(boxes, dtype=np.float64).reshape(-1, 4),
                                 np.array(labels, dtype=np.int64), h, w, str(xp), report)
        if len(lab) == 0:
            report.add("negative_image", f"{ip}")
        records.append(Record(str(ip), b, lab, img_id, h, w))
    return DatasetIndex(records, names, list(range(1, len(names) + 1)), str(root), "voc", report)


# ----------------------------------------------------------------------------- entry

def detect_format(path: str | Path) -> str:
    """``"coco"``, ``"yolo"`` or ``"voc"`` for a path (json file or dataset folder)."""
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".json":
        return "coco"
    if not p.exists():
        raise DatasetError(f"{p}: no such file or folder")
    if p.is_dir():
        if (p / "Annotations").is_dir():
            return "voc"
        if (p / "labels").is_dir() or ((p / "images").is_dir() and not (p / "annotations").is_dir()):
            return "yolo"
        if (p / "annotations").is_dir() or list(p.glob("*.json")):
            return "coco"
    if p.is_file() and p.suffix.lower() in (".yaml", ".yml"):
        return "yolo"
    raise DatasetError(f"{p}: cannot tell the dataset format (expected a COCO .json, a folder "
                       f"with annotations/*.json, a YOLO folder with images/ + labels/, or a VOC "
                       f"folder with Annotations/ + JPEGImages/)")


def load_dataset(path: str | Path, split: str | None = None, *, strict: bool = True,
                 image_root: str | Path | None = None) -> DatasetIndex:
    """Load a dataset of any supported format (auto-detected).

    strict: raise :class:`DatasetError` listing the errors (unknown categories, duplicate ids,
    malformed entries, ...) when there are any; warnings (clipped/degenerate boxes, crowd,
    negatives) are fixed, counted and kept in ``index.report``.
    """
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "coco":
        jp = p if p.is_file() else _find_coco_json(p, split)
        index = load_coco(jp, split, image_root=image_root)
    elif fmt == "yolo":
        index = load_yolo(p, split)  # a folder, or a dataset yaml
    else:
        index = load_voc(p, split)
    if strict:
        index.report.raise_if_errors()
    return index
