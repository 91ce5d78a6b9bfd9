"""FineParser's ablations as settings of the one model (issue 9; decision D4; docs/METHODS.md
"FineParser: ablations"). `ablation_config(name)` gives the overrides of `build_model("fineparser",
...)`; every name is a row of the paper's Tables 3-5.

Table 3's modules are the paper's (A = SAP only, B = SVE only, C = TAP only, D = SVE+TAP,
E = all), but the paper does not say how a row without TAP cuts its steps or how a row without
SAP feeds TAP. These constructions are THIS PROJECT'S (D4's proposal), to be labelled so:
  A: SAP's gate + the I3D stream, cut into uniform thirds (no TAP, so no PSNet and no AIoU);
  B: the SVE stream only, uniform thirds (no SAP, no TAP);
  C: the I3D stream on the ungated features f, cut at PSNet's boundaries (no SAP);
  D: C + the SVE stream;
  E: everything (the default).
Table 4's "step duration" is read as the SVE projection's tokens per step (2 / 4 / 8); the I3D
stream keeps its 4 snippets per step. Table 5's backbone is which per-frame features the cache
holds for SVE: the I3D-2D default or torchvision's ResNet-34 from a weights file; ResNet-18/50
and ViT-S/16 have no weights obtainable here (and ResNet-50 / ViT widths need another
projection), so they are not rows.
"""

from __future__ import annotations

from typing import Any

ABLATIONS: dict[str, dict[str, Any]] = {
    "table3_A": {"use_tap": False, "streams": ("i3d",)},
    "table3_B": {"use_sap": False, "use_tap": False, "streams": ("sve",)},
    "table3_C": {"use_sap": False, "streams": ("i3d",)},
    "table3_D": {"use_sap": False},
    "table3_E": {},
    "table4_2": {"sve_tokens": 2},
    "table4_4": {},
    "table4_8": {"sve_tokens": 8},
    "table5_i3d2d": {"sve_backbone": "i3d2d"},
    "table5_resnet34": {"sve_backbone": "resnet34"},
}
OURS = frozenset({"table3_A", "table3_B", "table3_C", "table3_D"})  # constructions the paper does not define


def ablation_config(name: str) -> dict[str, Any]:
    """The config overrides of ablation `name` (a copy: callers may add their own settings)."""
    try:
        return dict(ABLATIONS[name])
    except KeyError:
        raise ValueError(f"unknown FineParser ablation {name!r}; known: {sorted(ABLATIONS)}") from None
