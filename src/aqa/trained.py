"""What params train: each dataset's `<variant>-<mode>` pairs and each variant's seeds.

A variant of `datasets.variants.<dataset>` trains in every mode of `train.exemplar_modes`; one of
`datasets.dn_only.<dataset>` trains w/ DN only (FineParser: its code draws exemplars of the same
dive number, and its paper has that one setting; MUSDL, whose modes are the same model:
SAME_MODEL_METHODS). A DVC matrix cannot leave combinations out, so
the dn-only variants have DVC groups of their own (train_dn@<variant>-dn; aqa.data.datasets.dvc_stage).
A variant's seeds are `train.variants.<variant>.train.seeds`, else `train.seeds`.
Plain Python (no torch): the Snakefile and the report import it.
"""

from __future__ import annotations

from typing import Any

DN = "dn"   # the one mode of a dn-only variant
NODN = "nodn"
# Methods whose exemplar mode changes nothing (direct scoring, and aqa.models.registry.variant_settings
# gives both modes the same config): MUSDL always assembles judge scores x DD (docs/METHODS.md D2). In
# datasets.dn_only they train once, and the report shows that model in the w/o DN columns too.
SAME_MODEL_METHODS = frozenset({"musdl"})


def dn_only(params: dict[str, Any], dataset: str) -> list[str]:
    """The variants trained on `dataset` w/ DN only."""
    return list(params["datasets"]["dn_only"].get(dataset, []))


def listed(params: dict[str, Any], dataset: str) -> list[str]:
    """Every variant trained on `dataset`: those in every mode, then the dn-only ones."""
    return list(params["datasets"]["variants"].get(dataset, [])) + dn_only(params, dataset)


def trained_pairs(params: dict[str, Any], dataset: str) -> list[tuple[str, str]]:
    """(variant, mode) of every `<variant>-<mode>` the params train (and evaluate) on `dataset`."""
    return [(base, mode) for base in params["datasets"]["variants"].get(dataset, [])
            for mode in params["train"]["exemplar_modes"]] + [(base, DN) for base in dn_only(params, dataset)]


def trained_names(params: dict[str, Any], dataset: str) -> list[str]:
    """`<variant>-<mode>` of every pair of trained_pairs."""
    return [f"{base}-{mode}" for base, mode in trained_pairs(params, dataset)]


def is_dn_only(params: dict[str, Any], dataset: str, base: str) -> bool:
    return base in dn_only(params, dataset)


def stage_name(params: dict[str, Any], stage: str, dataset: str, variant: str) -> str:
    """The DVC stage that runs `stage` (train, evaluate) of `<base>-<mode>` on `dataset`, as dvc.yaml
    names it (train_dn_mtl_aqa@musdl-dn); `stage@variant` for a dataset the pipeline does not know."""
    from aqa.data.datasets import DATASETS, dvc_stage

    if dataset not in DATASETS:
        return f"{stage}@{variant}"
    return f"{dvc_stage(stage, dataset, is_dn_only(params, dataset, variant.rsplit('-', 1)[0]))}@{variant}"


def same_model_in_both_modes(params: dict[str, Any], dataset: str) -> list[str]:
    """The dn-only variants on `dataset` whose w/o DN model would be their w/ DN one (SAME_MODEL_METHODS)."""
    return [base for base in dn_only(params, dataset)
            if params["train"]["variants"][base]["method"] in SAME_MODEL_METHODS]


def variant_seeds(params: dict[str, Any], base: str) -> list[int]:
    """The seeds `base` trains and is evaluated with: its own `train.seeds`, else params.train.seeds."""
    own = (params["train"]["variants"].get(base, {}).get("train") or {}).get("seeds")
    return list(own if own is not None else params["train"]["seeds"])
