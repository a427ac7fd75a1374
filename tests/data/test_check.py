from damoyolo.cli import main
from damoyolo.data.check import check_dataset

from .broken import make_broken_coco


def test_check_reports_every_fault(tmp_path, capsys):
    p = make_broken_coco(tmp_path / "ds")
    stats = tmp_path / "stats.png"
    assert main(["data", "check", str(p), "--stats", str(stats)]) == 1
    out = capsys.readouterr().out
    for kind in ("missing_image", "corrupt_image", "converted_image", "unknown_category",
                 "duplicate_image_id", "duplicate_annotation_id", "unknown_image", "malformed",
                 "box_clipped", "box_degenerate", "size_mismatch", "negative_image", "FAILED"):
        assert kind in out, kind
    assert "annotations[3] (id=4) in image good.jpg: category_id 77" in out
    assert stats.is_file() and stats.stat().st_size > 1000
    c = check_dataset(p).report.counts
    assert c["missing_image"] == 1 and c["corrupt_image"] == 4  # empty, trunc jpg/png, garbage
    assert c["converted_image"] == 3  # gray, rgba, 16-bit
    assert c["size_mismatch"] == 1


def test_check_ok_on_synthetic(tmp_path, capsys):
    assert main(["data", "synth", str(tmp_path / "s"), "--images", "6", "--seed", "3",
                 "--size", "160", "--workers", "1"]) == 0
    assert main(["data", "check", str(tmp_path / "s"), "--split", "val",
                 "--stats", str(tmp_path / "st.png")]) == 0
    assert "OK" in capsys.readouterr().out
