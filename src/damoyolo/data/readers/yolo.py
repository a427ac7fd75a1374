"""YOLO txt / yaml reader."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...preprocess import IMAGE_SUFFIXES
from ..imageinfo import image_size
from ..records import DataReport, DatasetError, DatasetIndex, Record
from ._common import _oversized, _read_names_file, _read_text, _sanitize_boxes, _short


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
