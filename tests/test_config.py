"""Dotted config overrides: typed, strict, and round-tripping through plain dicts."""

from __future__ import annotations

import json

import pytest

import damoyolo
from damoyolo.config import ConfigError, ModelConfig, apply_overrides, from_dict, to_dict


def test_overrides_typed_and_strict():
    cfg = damoyolo.get_preset("damoyolo-s").model
    new = apply_overrides(cfg, ["head.num_classes=3", "backbone.act=silu", "input_size=(320, 480)",
                                "neck.out_channels=[64, 128, 256]"])
    assert new.head.num_classes == 3 and new.backbone.act == "silu"
    assert new.input_size == (320, 480) and new.neck.out_channels == (64, 128, 256)
    assert cfg.head.num_classes == 80  # frozen original untouched
    with pytest.raises(ConfigError, match="Did you mean head.num_classes|Did you mean num_classes"):
        apply_overrides(cfg, ["head.num_clases=3"])
    with pytest.raises(ConfigError, match="expected an integer"):
        apply_overrides(cfg, ["head.num_classes=2.5"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(cfg, ["head.num_classes"])
    assert from_dict(ModelConfig, json.loads(json.dumps(to_dict(new)))) == new
    with pytest.raises(ConfigError, match="unknown config key 'bogus'"):
        from_dict(ModelConfig, {"bogus": 1})
