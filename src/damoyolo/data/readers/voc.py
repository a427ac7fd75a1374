"""Pascal VOC xml reader."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..records import DataReport, DatasetError, DatasetIndex, Record
from ._common import _image_hw, _inside_root, _read_names_file, _read_text, _sanitize_boxes


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
            declared = (int(float(tree.findtext("size/height"))),
                        int(float(tree.findtext("size/width"))))
            assert min(declared) > 0
        except (TypeError, ValueError, OverflowError, AssertionError):  # absent, nan, inf
            declared = None
        hw = _image_hw(declared, ip, f"{ip} ({xp.name})", report,
                       "no valid <size> and the image is unreadable")
        if hw is None:
            continue
        h, w = hw
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
