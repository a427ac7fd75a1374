"""YOLO dataset yaml: ``path`` and split keys are honoured; the fallback parser used without
PyYAML reads the same files; ``data check`` writes nothing unless asked."""

import sys

import pytest

from damoyolo.cli import main
from damoyolo.data import DatasetError, load_dataset
from damoyolo.data.readers import _mini_yaml

from .conftest import write_img

YAML = """# an Ultralytics-style dataset file
path: ds  # dataset root, relative to this file
train: images/training
val: images/validation
names:
  0: person
  1: car
"""


def _ultralytics_layout(tmp_path):
    root = tmp_path / "ds"
    for split, n in (("training", 2), ("validation", 1)):
        for i in range(n):
            write_img(root / "images" / split / f"{split}{i}.jpg", h=50, w=100)
            lp = root / "labels" / split / f"{split}{i}.txt"
            lp.parent.mkdir(parents=True, exist_ok=True)
            lp.write_text("1 0.5 0.5 0.2 0.4\n")
    (tmp_path / "coco8.yaml").write_text(YAML)
    return tmp_path / "coco8.yaml"


@pytest.mark.parametrize("with_pyyaml", [True, False])
def test_yaml_path_and_split_keys_are_honoured(tmp_path, monkeypatch, with_pyyaml):
    if not with_pyyaml:
        monkeypatch.setitem(sys.modules, "yaml", None)  # the fallback parser reads it
    else:
        pytest.importorskip("yaml")
    yml = _ultralytics_layout(tmp_path)
    train, val = load_dataset(yml, "train"), load_dataset(yml, "val")
    assert train.class_names == ["person", "car"]
    assert sorted(r.path.rsplit("/", 1)[-1] for r in train.records) == ["training0.jpg",
                                                                          "training1.jpg"]
    assert [r.path.rsplit("/", 1)[-1] for r in val.records] == ["validation0.jpg"]
    assert val.records[0].labels.tolist() == [1]  # labels found under labels/validation
    assert val.records[0].boxes.tolist() == [[40.0, 15.0, 60.0, 35.0]]


def test_a_split_given_as_a_list_file_is_refused_by_name(tmp_path):
    yml = _ultralytics_layout(tmp_path)
    yml.write_text(YAML.replace("val: images/validation", "val: val.txt"))
    with pytest.raises(DatasetError, match=r"coco8.yaml: 'val: val.txt' is not supported"):
        load_dataset(yml, "val")


def test_mini_yaml_reads_what_pyyaml_reads():
    yaml = pytest.importorskip("yaml")
    texts = [YAML,
             "names: [cat, 'dog', \"eel\"]\nnc: 3\n",
             "train: images/train\nnames:\n  - a\n  - b  # second\n"]
    for text in texts:
        want = yaml.safe_load(text)
        got = _mini_yaml(text)
        # the fallback keeps scalars as strings (only names and paths are used)
        norm = {k: ({str(i): str(v) for i, v in x.items()} if isinstance(x, dict) else
                    [str(v) for v in x] if isinstance(x, list) else str(x))
                for k, x in want.items()}
        assert got == norm, text


def test_data_check_writes_nothing_unless_asked(tmp_path, monkeypatch, capsys):
    root = tmp_path / "yolo"
    write_img(root / "images" / "a.jpg")
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "classes.txt").write_text("thing\n")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = sorted(p for p in tmp_path.rglob("*"))
    assert main(["data", "check", str(root)]) == 0
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert "label statistics" not in capsys.readouterr().out
    assert main(["data", "check", str(root), "--stats", "s.png"]) == 0
    assert (cwd / "s.png").stat().st_size > 1000
