import json

import numpy as np
import pytest

from damoyolo.data import DatasetError, detections_to_coco_results, load_dataset

from .conftest import write_img


def test_coco_reader_mapping(coco_dir):
    idx = load_dataset(coco_dir, "train")
    assert idx.format == "coco" and len(idx) == 3
    # labels follow increasing category id
    assert idx.category_ids == [7, 13, 42] and idx.class_names == ["dog", "eel", "cat"]
    r1 = idx.records[0]
    assert r1.path.endswith("train/1.jpg") and (r1.height, r1.width) == (60, 80)
    np.testing.assert_allclose(r1.boxes, [[10, 10, 30, 30], [30, 5, 40, 45]])
    assert r1.labels.tolist() == [2, 0]
    assert idx.report.counts["negative_image"] == 1  # image 3 kept as a negative
    assert len(idx.records[2].labels) == 0


def test_category_roundtrip_through_coco_results(coco_dir):
    idx = load_dataset(coco_dir / "annotations" / "train.json")
    original = json.loads((coco_dir / "annotations" / "train.json").read_text())
    want = {(a["image_id"], a["category_id"], tuple(a["bbox"])) for a in original["annotations"]}
    got = set()
    for r in idx.records:  # perfect detections with contiguous labels
        for res in detections_to_coco_results(r.image_id, r.boxes, np.ones(len(r.labels)), r.labels,
                                              idx.category_ids):
            got.add((res["image_id"], res["category_id"], tuple(res["bbox"])))
    assert got == want
    gt = idx.to_coco_dict()
    assert {c["id"] for c in gt["categories"]} == {7, 13, 42}
    assert {(a["image_id"], a["category_id"], tuple(a["bbox"])) for a in gt["annotations"]} == want


def _coco(tmp_path, anns, cats=None, images=None):
    root = tmp_path / "bad"
    write_img(root / "images" / "a.jpg")
    data = {"images": images or [{"id": 1, "file_name": "a.jpg", "height": 60, "width": 80}],
            "categories": cats or [{"id": 1, "name": "x"}], "annotations": anns}
    p = root / "ann.json"
    p.write_text(json.dumps(data))
    return p


def test_coco_unknown_category_names_record(tmp_path):
    p = _coco(tmp_path, [{"id": 5, "image_id": 1, "category_id": 9, "bbox": [0, 0, 5, 5]}])
    with pytest.raises(DatasetError) as e:
        load_dataset(p)
    msg = str(e.value)
    assert "unknown_category" in msg and "id=5" in msg and "a.jpg" in msg and str(p) in msg


def test_coco_duplicates_and_malformed(tmp_path):
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]},
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [1, 1, "w", 5]},
            {"id": 3, "image_id": 99, "category_id": 1, "bbox": [1, 1, 5, 5]}]
    images = [{"id": 1, "file_name": "a.jpg", "height": 60, "width": 80},
              {"id": 1, "file_name": "b.jpg", "height": 60, "width": 80}]
    idx = load_dataset(_coco(tmp_path, anns, images=images), strict=False)
    c = idx.report.counts
    assert c["duplicate_annotation_id"] == 1 and c["malformed"] == 1
    assert c["unknown_image"] == 1 and c["duplicate_image_id"] == 1
    assert not idx.report.ok


def test_coco_clip_and_degenerate_counted(tmp_path):
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [70, 50, 30, 30]},  # clipped
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [10, 10, 0, 5]},  # zero area
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [10, 10, -4, 5]},  # negative
            {"id": 4, "image_id": 1, "category_id": 1, "bbox": [5, 5, 5, 5], "iscrowd": 1}]
    idx = load_dataset(_coco(tmp_path, anns))
    assert idx.report.counts["box_clipped"] == 1
    assert idx.report.counts["box_degenerate"] == 2
    assert idx.report.counts["crowd_skipped"] == 1
    np.testing.assert_allclose(idx.records[0].boxes, [[70, 50, 80, 60]])


def test_coco_invalid_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(DatasetError, match="x.json: not valid JSON"):
        load_dataset(p)


def test_yolo_reader(tmp_path):
    root = tmp_path / "yolo"
    write_img(root / "images" / "train" / "a.png", h=100, w=200)
    write_img(root / "images" / "train" / "b.jpg", h=100, w=200)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text(
        "1 0.5 0.5 0.2 0.4\n0 0.1 0.2 0.3 0.4 0.1 0.4\n")  # box + polygon
    (root / "data.yaml").write_text("names:\n  0: person\n  1: car\n")
    idx = load_dataset(root, "train")
    assert idx.format == "yolo" and idx.class_names == ["person", "car"]
    assert idx.category_ids == [0, 1]
    a = idx.records[0]
    np.testing.assert_allclose(a.boxes, [[80, 30, 120, 70], [20, 20, 60, 40]], atol=1e-4)
    assert a.labels.tolist() == [1, 0]
    assert len(idx.records[1].labels) == 0 and idx.report.counts["negative_image"] == 1


def test_yolo_malformed_names_file_and_line(tmp_path):
    root = tmp_path / "yolo"
    write_img(root / "images" / "a.jpg")
    (root / "labels").mkdir(parents=True)
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.2\n3 0.5 0.5 0.1 0.1\nx 1 2 3 4\n")
    (root / "classes.txt").write_text("a\nb\n")
    with pytest.raises(DatasetError) as e:
        load_dataset(root)
    msg = str(e.value)
    assert "a.txt:1" in msg and "a.txt:2" in msg and "a.txt:3" in msg
    (root / "classes.txt").unlink()
    with pytest.raises(DatasetError, match="needs class names"):
        load_dataset(root)


VOC_XML = """<annotation><filename>{name}.jpg</filename>
<size><width>80</width><height>60</height><depth>3</depth></size>
<object><name>dog</name><difficult>0</difficult><bndbox><xmin>11</xmin><ymin>21</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>
<object><name>cat</name><difficult>1</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>
<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>90</xmax><ymax>50</ymax></bndbox></object>
</annotation>"""


def test_voc_reader(tmp_path):
    root = tmp_path / "voc"
    write_img(root / "JPEGImages" / "0001.jpg")
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "0001.xml").write_text(VOC_XML.format(name="0001"))
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("0001\n")
    idx = load_dataset(root, "train")
    assert idx.format == "voc" and idx.class_names == ["cat", "dog"] and idx.category_ids == [1, 2]
    r = idx.records[0]
    np.testing.assert_allclose(r.boxes, [[10, 20, 30, 40], [0, 0, 80, 50]])
    assert r.labels.tolist() == [1, 0]
    assert idx.report.counts["difficult_skipped"] == 1 and idx.report.counts["box_clipped"] == 1


def test_voc_malformed(tmp_path):
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "x.xml").write_text("<annotation><object>")
    (root / "classes.txt").write_text("dog\n")
    with pytest.raises(DatasetError, match=r"x\.xml: invalid XML"):
        load_dataset(root)
    (root / "Annotations" / "x.xml").write_text(VOC_XML.format(name="x"))
    with pytest.raises(DatasetError, match=r"x\.xml object 1 \('cat'\)"):
        load_dataset(root)


def test_unknown_format(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="cannot tell the dataset format"):
        load_dataset(tmp_path / "empty")


def test_images_that_are_symlinks_are_read(coco_dir, tmp_path):
    """Split folders made of symbolic links (ln -s, DVC, git-annex) point outside the image
    folder by design: the names in the annotations are what must stay inside."""
    store = tmp_path / "store"
    store.mkdir()
    for i in (1, 2, 3):
        (coco_dir / "train" / f"{i}.jpg").rename(store / f"{i}.jpg")
        (coco_dir / "train" / f"{i}.jpg").symlink_to(store / f"{i}.jpg")
    idx = load_dataset(coco_dir, "train")
    assert len(idx.records) == 3 and idx.report.ok


def test_voc_image_list_names_stay_inside(tmp_path):
    root = tmp_path / "voc"
    write_img(root / "JPEGImages" / "0001.jpg")
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "0001.xml").write_text(VOC_XML.format(name="0001"))
    (tmp_path / "outside.xml").write_text(VOC_XML.format(name="0001"))
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("0001\n../../outside\n")
    with pytest.raises(DatasetError, match=r"train\.txt: image name '\.\./\.\./outside' points"):
        load_dataset(root, "train")
