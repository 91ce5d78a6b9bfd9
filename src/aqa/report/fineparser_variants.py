"""Which FineParser variant fills which row of FineParser's Tables 1 and 3-5: the one mapping.

The variant names are those the training and evaluation stages use (params `train.variants`,
`datasets.dn_only.finediving` or `datasets.variants.finediving`); each variant's metrics are
`reports/metrics/finediving/<variant>-<mode>.json`, as every method's. A variant is one of the model's ablations
(aqa.models.fineparser_ablations): `fineparser` is the main model, i.e. row E of Table 3, step
duration 4 of Table 4 and the default SVE backbone of Table 5.
"""

from __future__ import annotations

from typing import Any

from aqa.models.fineparser_ablations import OURS, ablation_config

METHOD = "fineparser"
MAIN = "fineparser"

# variant name -> the ablation it runs (aqa.models.fineparser_ablations.ABLATIONS)
VARIANTS: dict[str, str] = {
    "fineparser": "table3_E",
    "fp_table3_a": "table3_A",
    "fp_table3_b": "table3_B",
    "fp_table3_c": "table3_C",
    "fp_table3_d": "table3_D",
    "fp_sve2": "table4_2",
    "fp_sve8": "table4_8",
    "fp_resnet34": "table5_resnet34",
}

# Table 3: (row, variant); Table 4: (step duration, variant); Table 5: (SVE backbone, variant).
TABLE3 = (("A", "fp_table3_a"), ("B", "fp_table3_b"), ("C", "fp_table3_c"), ("D", "fp_table3_d"),
          ("E", MAIN))
TABLE4 = ((2, "fp_sve2"), (4, MAIN), (8, "fp_sve8"))
TABLE5 = (("i3d2d", MAIN), ("resnet34", "fp_resnet34"))

# What running a variant needs beyond its params lines: ResNet-34's features in the cache.
# The ablations params/fineparser.yaml (`make fineparser`) adds to the built-in default, which trains
# the main model only (fp_resnet34 needs a weights file from outside).
OVERLAY_VARIANTS = ("fp_table3_a", "fp_table3_b", "fp_table3_c", "fp_table3_d", "fp_sve2", "fp_sve8")

EXTRA_NEEDS = {
    "fp_resnet34": "and the cache's SVE features from ResNet-34 (extract_features.sve_backbone: resnet34, "
                   "extract_features.sve_weights_path: torchvision's resnet34-b627a593.pth; docs/METHODS.md "
                   "\"The SVE backbone\")",
}


def metrics_name(variant: str, mode: str) -> str:
    """The stem of a variant's metrics file (and its DVC stage item): `<variant>-<mode>`."""
    return f"{variant}-{mode}"


def is_ours(variant: str) -> bool:
    """A row this project constructed (the paper does not define how it runs; Table 3 A-D)."""
    return VARIANTS[variant] in OURS


def _flow(value: Any) -> str:
    """A YAML flow-style value as params.yaml writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return str(value)


def params_line(variant: str) -> str:
    """The train.variants entry that runs `variant`: the method and its ablation by name (the main
    model: the method alone)."""
    ablation = "" if variant == MAIN else f", ablation: {VARIANTS[variant]}"
    return f"{variant}: {{method: {METHOD}{ablation}}}"


def how_to_run(variant: str, params: dict[str, Any], dataset: str = "finediving") -> str:
    """The not-run reason and how to run it: the variant's name and the params lines it needs."""
    what = "the main model" if variant == MAIN else f"ablation {VARIANTS[variant]}"
    text = (f"params do not train {variant} ({what}); to run it add `{variant}` to datasets.dn_only.{dataset} "
            "(w/ DN, the published setting; datasets.variants: both modes)")
    if variant not in params["train"]["variants"]:
        text += f" and `{params_line(variant)}` to train.variants"
    if params["extract_features"]["fineparser"].get(dataset) in (False, None):   # its cache additions
        text += f", set extract_features.fineparser.{dataset}: true"
    extra = EXTRA_NEEDS.get(variant)
    text += (f", {extra}" if extra else "") + ", then dvc repro"
    return text + (" (or `make fineparser`)" if variant in OVERLAY_VARIANTS else "")


def settings_mismatch(variant: str, settings: dict[str, Any]) -> str | None:
    """Why the params' entry of `variant` cannot be the ablation its rows are labelled with, or None:
    its method must be FineParser, and a setting of the ablation it states must have the ablation's
    value (a setting it leaves out may live elsewhere in params, e.g. the SVE backbone of the cache)."""
    if settings.get("method") != METHOD:
        return f"method {settings.get('method')!r}, not {METHOD}"
    name = settings.get("ablation")
    if name is not None:
        return None if name == VARIANTS[variant] else f"ablation {name!r}, not {VARIANTS[variant]}"
    for key, value in ablation_config(VARIANTS[variant]).items():
        if key not in settings:
            continue
        given = settings[key]
        if (list(given) if isinstance(given, (list, tuple)) else given) != (
                list(value) if isinstance(value, tuple) else value):
            return f"{key}: {_flow(given)}, where the ablation {VARIANTS[variant]} has {_flow(value)}"
    return None
