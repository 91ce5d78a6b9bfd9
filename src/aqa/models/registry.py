"""One registry of methods: `build_model(method, **cfg)` for every variant of Tables 2 and 3.

A method is a model class, its config dataclass and the overrides that make the variant (so
F+R, F+R* and F+R# are one model with three settings, not three copies). Nested configs
(`psnet`, `decoder`) may be given as dicts, so `dataclasses.asdict(model.cfg)` stored in a
checkpoint rebuilds the model. TSA-dagger is not a model: it is `tsa` evaluated with
`transitions="gt"`.

Each method says whether it is pairwise (encode / compare, scored by multi-exemplar voting) or
direct (`model(batch)`, `model.loss(out, batch)`, `model.predict(out)`; aqa.models.direct), and
whether it reads the spatial maps. `variant_settings` gives the config an exemplar mode and the
training pool imply (CoRe's group edges, the DD readings of the baselines).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np
from torch import nn

from aqa.models.core import CoReConfig, CoReModel, core_pool_settings
from aqa.models.decoder import DecoderConfig
from aqa.models.direct import I3DMLPConfig, I3DMLPModel
from aqa.models.fineparser import FineParserConfig, FineParserModel
from aqa.models.fineparser_ablations import ablation_config
from aqa.models.psnet import PSNetConfig
from aqa.models.sap import SAPConfig
from aqa.models.tsa import FRConfig, FRModel, FSRConfig, FSRModel, TSAConfig, TSAModel
from aqa.models.usdl import MUSDLConfig, MUSDLModel, USDLConfig, USDLModel


class Method(NamedTuple):
    model: type[nn.Module]
    config: type
    preset: dict[str, Any]
    description: str
    pairwise: bool = True       # False: direct prediction, no exemplars
    reads_maps: bool = False    # needs batch["maps"] (16x the pooled features)
    step_labels: bool = False   # learns the step transitions: needs a dataset with step labels


METHODS: dict[str, Method] = {
    "fr": Method(FRModel, FRConfig, {}, "F+R: video-level features, symmetric contrastive regression"),
    "fr_asym": Method(FRModel, FRConfig, {"symmetric": False}, "F+R*: F+R, query-to-exemplar loss only"),
    "fr_dn": Method(FRModel, FRConfig, {"use_action": True}, "F+R#: F+R with an action-type embedding"),
    "fsr": Method(FSRModel, FSRConfig, {}, "F+S+R: F+R plus PSNet, step-wise regression", step_labels=True),
    "tsa": Method(TSAModel, TSAConfig, {}, "TSA: PSNet + procedure-aware cross-attention", reads_maps=True,
                  step_labels=True),
    "core": Method(CoReModel, CoReConfig, {}, "CoRe: contrastive regression, group-aware regression tree"),
    "i3d_mlp": Method(I3DMLPModel, I3DMLPConfig, {}, "I3D+MLP: clip-mean feature regressed by an MLP (MSE)",
                      pairwise=False),
    "usdl": Method(USDLModel, USDLConfig, {}, "USDL: Gaussian score distribution, KL loss", pairwise=False),
    "musdl": Method(MUSDLModel, MUSDLConfig, {}, "MUSDL: one score distribution per judge, panel rule x DD",
                    pairwise=False),
    "fineparser": Method(FineParserModel, FineParserConfig, {}, "FineParser: SAP gate + PSNet + SVE and I3D "
                         "streams, fine-grained regression (ablations: aqa.models.fineparser_ablations)",
                         step_labels=True),
}

_NESTED = {"psnet": PSNetConfig, "decoder": DecoderConfig, "sap": SAPConfig}


def is_pairwise(method: str) -> bool:
    """True: encode / compare, scored by voting over exemplars; False: model(batch) predicts."""
    return _method(method).pairwise


def reads_maps(method: str) -> bool:
    return _method(method).reads_maps


def needs_step_labels(method: str) -> bool:
    """True for methods supervised by the step transitions (PSNet): F+S+R and TSA."""
    return _method(method).step_labels


# Settings that the exemplar mode and the training pool decide (`variant_settings`), which a
# variant in params.yaml may not set itself.
MODE_SETTINGS: dict[str, frozenset[str]] = {
    "usdl": frozenset({"use_dd"}), "i3d_mlp": frozenset({"use_dd"}), "core": frozenset({"use_dd", "edges"}),
}


def variant_settings(method: str, mode: str, *, score: np.ndarray, difficulty: np.ndarray,
                     action: np.ndarray, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config the exemplar mode (dn | nodn) and the training pool's dives imply, to merge
    into the variant's params before `build_model` (arrays (N,) of the pool's score, degree of
    difficulty and action type; `config` the variant's own settings, which win over these for
    the keys they set, except MODE_SETTINGS). {} for methods whose modes differ only in the
    exemplars.

    usdl, i3d_mlp: dn = the with-DD reading (y / DD learnt, x DD at prediction), nodn = raw score
    (BASELINES D2 R2). core: use_dd, theta and the group edges of the pool for the tree's depth
    (D7, D8). musdl: {} (it always uses the judges and DD; its nodn row is the same model, D2)."""
    _method(method)
    if mode not in ("dn", "nodn"):
        raise ValueError(f"exemplar mode must be 'dn' or 'nodn', got {mode!r}")
    if method in ("usdl", "i3d_mlp"):
        return {"use_dd": mode == "dn"}
    if method == "core":
        depth = (config or {}).get("depth", CoReConfig.depth)
        return core_pool_settings(score, difficulty, action, mode, depth=depth)
    return {}


def config_fields(method: str) -> set[str]:
    """The keyword arguments `build_model(method, ...)` accepts."""
    return {f.name for f in dataclasses.fields(_method(method).config)}


def make_config(method: str, **cfg: Any):
    """The method's config dataclass: its preset, then `cfg` (unknown keys raise TypeError)."""
    spec = _method(method)
    values = {**spec.preset, **cfg}
    if spec.config is FineParserConfig and "ablation" in values:   # a row of Tables 3-5: its settings
        values = {**ablation_config(values["ablation"]), **values}  # under the explicit ones
    unknown = set(values) - config_fields(method)
    if unknown:
        raise TypeError(f"{method}: unknown config keys {sorted(unknown)}; "
                        f"accepted: {sorted(config_fields(method))}")
    for name, value in list(values.items()):
        if name in _NESTED and isinstance(value, dict):
            values[name] = _NESTED[name](**{k: _tuple(v) for k, v in value.items()})
        else:
            values[name] = _tuple(value)
    return spec.config(**values)


def build_model(method: str, **cfg: Any) -> nn.Module:
    """Pairwise methods: an nn.Module with forward(query, exemplar, transitions="pred"|"gt") -> dict,
    its two halves encode(batch, transitions) -> dict and compare(enc_q, enc_e) -> dict, and
    loss(out, query, exemplar) -> (total, parts). Direct methods: forward(batch) -> dict,
    loss(out, batch) -> (total, parts), predict(out) -> (B,) scores. `model.cfg` is its config,
    `model.method` its name, `model.pairwise` which of the two it is."""
    spec = _method(method)
    model = spec.model(make_config(method, **cfg))
    model.method = method
    model.pairwise = spec.pairwise
    return model


def _method(method: str) -> Method:
    try:
        return METHODS[method]
    except KeyError:
        raise ValueError(f"unknown method {method!r}; known: {sorted(METHODS)}") from None


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v  # YAML/JSON give lists where configs hold tuples
