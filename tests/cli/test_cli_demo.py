"""`damoyolo models` and `damoyolo demo`: the smoke demo and the full toy pipeline."""

from __future__ import annotations

import json


def test_cli_models_and_demo(tmp_path, capsys):
    from damoyolo.cli import main
    assert main(["models", "damoyolo-ns", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["name"] == "damoyolo-ns" and abs(rows[0]["params_m"] - 1.406) < 0.01
    assert abs(rows[0]["gflops_bn_half"] - 1.56) < 0.0156
    assert main(["models", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(["demo", "--smoke", "--out", str(tmp_path / "demo")]) == 0
    out = tmp_path / "demo"
    assert (out / "prediction.jpg").stat().st_size > 1000
    assert len(json.loads((out / "prediction.json").read_text())) == 10


def test_cli_demo_full_pipeline(tmp_path, capsys):
    """The README's main job at toy scale: synth -> train -> val (mAP printed) -> predict."""
    from damoyolo.cli import main
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--images", "20", "--epochs", "1", "--imgsz", "96",
                 "--batch", "4", "--conf", "0.0"]) == 0
    text = capsys.readouterr().out
    assert "mAP@[.5:.95]" in text and "4/4 predict" in text
    assert (out / "train" / "last.pt").exists() and (out / "train" / "results.png").exists()
    drawn = list((out / "predict").glob("*.jpg"))
    assert len(drawn) == 1 and drawn[0].stat().st_size > 1000
    results = json.loads((out / "val_results.json").read_text())  # COCO results written
    assert isinstance(results, list)  # (one toy epoch may leave every score under 0.03)
    assert all(set(r) >= {"image_id", "category_id", "bbox", "score"} for r in results)
