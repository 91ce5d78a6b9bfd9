"""The method registry: names, presets, config round trip through a checkpoint-like dict."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from aqa.models.registry import METHODS, build_model, config_fields, make_config
from aqa.models.tsa import FRModel, FSRModel, TSAModel


def test_methods_and_presets():
    assert set(METHODS) == {"fr", "fr_asym", "fr_dn", "fsr", "tsa"}
    assert make_config("fr").symmetric and not make_config("fr_asym").symmetric
    assert make_config("fr_dn", num_actions=3).use_action
    assert isinstance(build_model("fr"), FRModel) and isinstance(build_model("fsr"), FSRModel)
    model = build_model("tsa")
    assert isinstance(model, TSAModel) and model.method == "tsa"


def test_paper_defaults():
    cfg = make_config("tsa")
    assert (cfg.decoder.dim, cfg.decoder.heads, cfg.decoder.depth, cfg.fix_size) == (64, 8, 3, 5)
    assert cfg.psnet.widths == (12, 24, 48, 96, 96) and cfg.psnet.in_channels == 9
    assert cfg.map_layout == "reference"


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown method"):
        build_model("core")
    with pytest.raises(TypeError, match="unknown config keys"):
        build_model("tsa", num_actions=3)
    with pytest.raises(ValueError, match="num_actions"):
        build_model("fr_dn")
    with pytest.raises(ValueError, match="decoder dim"):
        build_model("tsa", decoder={"dim": 32, "heads": 8})
    assert "num_actions" in config_fields("fr_dn") and "num_actions" not in config_fields("tsa")


def test_config_round_trip_rebuilds_the_same_model():
    torch.manual_seed(0)
    model = build_model("tsa", psnet={"feature_dim": 128}, decoder={"dim": 8, "heads": 2}, fix_size=4)
    stored = dataclasses.asdict(model.cfg)  # what a checkpoint keeps (lists after JSON/YAML)
    stored["psnet"]["widths"] = list(stored["psnet"]["widths"])
    clone = build_model("tsa", **stored)
    assert clone.cfg == model.cfg
    clone.load_state_dict(model.state_dict())
