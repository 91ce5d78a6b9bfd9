"""The method registry: names, presets, config round trip through a checkpoint-like dict."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from aqa.models.core import CoReModel
from aqa.models.direct import I3DMLPModel
from aqa.models.registry import (
    METHODS, build_model, config_fields, is_pairwise, make_config, reads_maps, variant_settings,
)
from aqa.models.tsa import FRModel, FSRModel, TSAModel
from aqa.models.usdl import MUSDLModel, USDLModel


def test_methods_and_presets():
    assert set(METHODS) == {"fr", "fr_asym", "fr_dn", "fsr", "tsa", "core", "i3d_mlp", "usdl", "musdl", "fineparser"}
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
        build_model("no_such_method")
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


def test_pairwise_and_direct_methods():
    assert {m for m in METHODS if not is_pairwise(m)} == {"i3d_mlp", "usdl", "musdl"}
    assert {m for m in METHODS if reads_maps(m)} == {"tsa"}
    for method, cls in (("i3d_mlp", I3DMLPModel), ("usdl", USDLModel), ("musdl", MUSDLModel)):
        model = build_model(method)
        assert isinstance(model, cls) and model.pairwise is False and model.method == method
    model = build_model("core", edges=[1, 2, 3, 4, 5, 6, 7])
    assert isinstance(model, CoReModel) and model.pairwise is True
    assert build_model("fr").pairwise is True


def test_variant_settings_by_mode():
    pool = dict(score=np.array([30.0, 40.0, 50.0, 45.0]), difficulty=np.array([2.0, 2.0, 2.5, 2.5]),
                action=np.array(["a", "a", "b", "b"]))
    assert variant_settings("usdl", "dn", **pool) == {"use_dd": True}
    assert variant_settings("usdl", "nodn", **pool) == {"use_dd": False}
    assert variant_settings("i3d_mlp", "dn", **pool) == {"use_dd": True}
    assert variant_settings("musdl", "nodn", **pool) == {} == variant_settings("tsa", "dn", **pool)
    core = variant_settings("core", "dn", **pool)
    assert core["use_dd"] and core["theta"] == 30.0 and len(core["edges"]) == 7
    build_model("core", **core)
    with pytest.raises(ValueError, match="exemplar mode"):
        variant_settings("usdl", "random", **pool)


@pytest.mark.parametrize("method,cfg", [("core", {"edges": [0.5, 1, 2, 3, 4, 5, 7], "use_dd": True}),
                                        ("usdl", {"use_dd": True, "prediction": "expectation"}),
                                        ("musdl", {}), ("i3d_mlp", {"hidden": [64, 32]})])
def test_baseline_config_round_trip(method, cfg):
    torch.manual_seed(0)
    model = build_model(method, **cfg)
    stored = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(model.cfg).items()}
    clone = build_model(method, **stored)  # lists, as after JSON / YAML
    assert clone.cfg == model.cfg
    clone.load_state_dict(model.state_dict())
