"""One registry of methods: `build_model(method, **cfg)` for every variant of Table 3.

A method is a model class, its config dataclass and the overrides that make the variant (so
F+R, F+R* and F+R# are one model with three settings, not three copies). Nested configs
(`psnet`, `decoder`) may be given as dicts, so `dataclasses.asdict(model.cfg)` stored in a
checkpoint rebuilds the model. TSA-dagger is not a model: it is `tsa` evaluated with
`transitions="gt"`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from torch import nn

from aqa.models.decoder import DecoderConfig
from aqa.models.psnet import PSNetConfig
from aqa.models.tsa import FRConfig, FRModel, FSRConfig, FSRModel, TSAConfig, TSAModel


class Method(NamedTuple):
    model: type[nn.Module]
    config: type
    preset: dict[str, Any]
    description: str


METHODS: dict[str, Method] = {
    "fr": Method(FRModel, FRConfig, {}, "F+R: video-level features, symmetric contrastive regression"),
    "fr_asym": Method(FRModel, FRConfig, {"symmetric": False}, "F+R*: F+R, query-to-exemplar loss only"),
    "fr_dn": Method(FRModel, FRConfig, {"use_action": True}, "F+R#: F+R with an action-type embedding"),
    "fsr": Method(FSRModel, FSRConfig, {}, "F+S+R: F+R plus PSNet, step-wise regression"),
    "tsa": Method(TSAModel, TSAConfig, {}, "TSA: PSNet + procedure-aware cross-attention"),
}

_NESTED = {"psnet": PSNetConfig, "decoder": DecoderConfig}


def config_fields(method: str) -> set[str]:
    """The keyword arguments `build_model(method, ...)` accepts."""
    return {f.name for f in dataclasses.fields(_method(method).config)}


def make_config(method: str, **cfg: Any):
    """The method's config dataclass: its preset, then `cfg` (unknown keys raise TypeError)."""
    spec = _method(method)
    values = {**spec.preset, **cfg}
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
    """An nn.Module with forward(query, exemplar, transitions="pred"|"gt") -> dict, its two halves
    encode(batch, transitions) -> dict and compare(enc_q, enc_e) -> dict, and
    loss(out, query, exemplar) -> (total, parts); `model.cfg` is its config, `model.method` its name."""
    model = _method(method).model(make_config(method, **cfg))
    model.method = method
    return model


def _method(method: str) -> Method:
    try:
        return METHODS[method]
    except KeyError:
        raise ValueError(f"unknown method {method!r}; known: {sorted(METHODS)}") from None


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v  # YAML/JSON give lists where configs hold tuples
