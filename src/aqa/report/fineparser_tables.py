"""FineParser's five tables (Xu et al., CVPR 2024), ours beside the published numbers.

  fineparser_table1: FineDiving-HM, every method (the paper's 9 published rows; ours for TSA, the
      baselines and FineParser), with SAP's mask metrics and the two trivial mask references;
  fineparser_table2: MTL-AQA (published rows; ours for the baselines the params run there);
  fineparser_table3: module ablation A-E (A-D are this project's constructions, labelled so);
  fineparser_table4: step duration of the SVE projection, 2 / 4 / 8;
  fineparser_table5: SVE backbone (the paper's four; ours: the I3D-2D default and ResNet-34).

The metrics are those `aqa.report.tables.load_metrics` loaded and checked for the FineDiving and
MTL-AQA tables (every variant x mode the params train, made from the current params). Which
variant fills which row: aqa.report.fineparser_variants. Ours is mean ± std over seeds, honest
protocol first, the paper protocol beside it, for each exemplar mode; a variant the params do not
train shows "not run" with how to run it. FineParser's published setting is w/ DN (its code draws
exemplars of the same dive number), so w/ DN comes first.
"""

from __future__ import annotations

from typing import Any

from aqa.data.datasets import FINEDIVING as FINEDIVING_DATA
from aqa.data.datasets import MTL_AQA
from aqa.report import fineparser_variants as fpv
from aqa.report.published import (
    FINEPARSER_FINEDIVING_HM,
    FINEPARSER_MASKS,
    FINEPARSER_MODULES,
    FINEPARSER_MTL_AQA,
    FINEPARSER_STEP_DURATION,
    FINEPARSER_SVE_BACKBONE,
    Published,
    PublishedMasks,
)
from aqa.report.tables import (NA, NOT_RUN, SAME_MODEL, SAME_MODEL_OF, ReportError, Table, honest_text, ours,
                               same_model_note, seeds_text)
from aqa.trained import listed

MODES = (("dn", "w/ DN"), ("nodn", "w/o DN"))
MTL_MODES = (("dn", "w/ DD"), ("nodn", "w/o DD"))
PROTOCOLS = (("honest", "honest"), ("paper", "paper protocol"))
AQA_KEYS = ("rho", "rl2_x100", "aiou50", "aiou75")
MASK_KEYS = ("mask_mae", "mask_fbeta", "mask_fbeta_max", "mask_smeasure")
ALL_KEYS = AQA_KEYS + MASK_KEYS
LABELS = {"rho": "rho", "rl2_x100": "R-l2", "aiou50": "AIoU@0.5", "aiou75": "AIoU@0.75", "mask_mae": "MAE",
          "mask_fbeta": "F_beta", "mask_fbeta_max": "max F_beta", "mask_smeasure": "S_m"}
DIGITS = {"rho": 4, "rl2_x100": 4, "aiou50": 2, "aiou75": 2, "mask_mae": 4, "mask_fbeta": 4,
          "mask_fbeta_max": 4, "mask_smeasure": 4}
PERCENT = {"aiou50", "aiou75"}  # fractions in the metrics, % in the tables
# the published mask metrics and the metrics files' mask_references blocks, by our column key
PUBLISHED_MASK = {"mask_mae": "mae", "mask_fbeta": "f_beta", "mask_smeasure": "s_measure"}
REFERENCE_MASK = {"mask_mae": "mae", "mask_fbeta": "fbeta", "mask_fbeta_max": "fbeta_max",
                  "mask_smeasure": "smeasure"}
REFERENCES = (("all_background", "All background (trivial mask reference)"),
              ("motion", "Motion mask (trivial mask reference)"))

# Table 1: (key, label, our variant or None = not implemented here); published: FineParser's Table 1.
TABLE1_ROWS = (("c3d_lstm", "C3D-LSTM", None), ("c3d_avg", "C3D-AVG", None), ("mscadc", "MSCADC", None),
               ("i3d_mlp", "I3D+MLP", "i3d_mlp"), ("usdl", "USDL", "usdl"), ("musdl", "MUSDL", "musdl"),
               ("core", "CoRe", "core"), ("tsa", "TSA", "tsa"), ("fineparser", "FineParser", fpv.MAIN))
# Table 2 (MTL-AQA): I3D+MLP is not in it, but runs on MTL-AQA here: an extra row, labelled so.
TABLE2_ROWS = (("pose_dct", "Pose+DCT", None), ("c3d_svr", "C3D-SVR", None), ("c3d_lstm", "C3D-LSTM", None),
               ("c3d_avg_stl", "C3D-AVG-STL", None), ("c3d_avg_mtl", "C3D-AVG-MTL", None),
               ("usdl", "USDL", "usdl"), ("musdl", "MUSDL", "musdl"), ("tsa_net", "TSA-Net", None),
               ("core", "CoRe", "core"), ("fineparser", "FineParser", fpv.MAIN),
               ("i3d_mlp", "I3D+MLP (extra row)", "i3d_mlp"))
MODULE_NAMES = {"A": "SAP only", "B": "SVE only", "C": "TAP only", "D": "SVE + TAP", "E": "SAP + SVE + TAP"}
TABLE5_NAMES = (("resnet18", "ResNet-18"), ("resnet34", "ResNet-34"), ("resnet50", "ResNet-50"),
                ("vit_s16", "ViT-S/16"))
# Table 5 backbones that cannot run here (docs/METHODS.md D4).
NO_WEIGHTS = "no pretrained weights obtainable on this project's machines{width}; not a variant here"
_PROJECTION = ", and its {}-d features would need another projection than the paper's 512 -> 64"
WIDTHS = {"resnet18": "", "resnet50": _PROJECTION.format(2048), "vit_s16": _PROJECTION.format(384)}
MTL_FINEPARSER = ("MTL-AQA annotates neither step transitions nor human masks, which FineParser's TAP and "
                  "SAP learn from; params do not train fineparser on MTL-AQA (datasets.variants.mtl_aqa)")
NOT_IMPLEMENTED = "published (not implemented here)"
TITLES = {
    "fineparser_table1": "FineParser Table 1: comparison with the state of the art on FineDiving(-HM)",
    "fineparser_table2": "FineParser Table 2: comparison with the state of the art on MTL-AQA",
    "fineparser_table3": "FineParser Table 3: ablation of FineParser's modules (SAP, SVE, TAP) on FineDiving(-HM)",
    "fineparser_table4": ("FineParser Table 4: step duration of the SVE projection (read as its tokens per "
                          "step, this project's reading: docs/METHODS.md D4)"),
    "fineparser_table5": "FineParser Table 5: SVE backbone",
}


# --------------------------------------------------------------------------- cells


def _number(key: str, value: float | None) -> str:
    return NA if value is None else f"{value:.{DIGITS[key]}f}"


def _summary(block: dict, key: str) -> tuple[float, float] | None:
    """(mean, std) of one metric of a protocol block: {"mean", "std"}, or a bare number with an
    optional `<key>_std` beside it."""
    value = block.get(key)
    if isinstance(value, dict):
        if value.get("mean") is None:
            return None
        return value["mean"], value.get("std") or 0.0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), float(block.get(f"{key}_std") or 0.0)
    return None


def ours_cell(result: dict | None, protocol: str, key: str) -> str:
    """mean ± std of one metric; "not run" without a result, "–" when the variant lacks the metric."""
    if result is None:
        return NOT_RUN
    found = _summary(result.get(protocol) or {}, key)
    if found is None:
        return NA
    scale = 100.0 if key in PERCENT else 1.0
    same = f" {SAME_MODEL}" if result.get(SAME_MODEL_OF) else ""   # the w/ DN model's (tables.with_same_model_modes)
    return f"{_number(key, found[0] * scale)} ± {_number(key, found[1] * scale)}{same}"


def published_cells(pub: Published | None, masks: PublishedMasks | None, keys: tuple[str, ...]) -> list[str]:
    cells = []
    for key in keys:
        if key in PUBLISHED_MASK:
            cells.append(_number(key, None if masks is None else getattr(masks, PUBLISHED_MASK[key])))
        elif key in MASK_KEYS:
            cells.append(NA)  # the paper reports one F_beta (the adaptive one is ours beside it)
        else:
            cells.append(_number(key, None if pub is None else getattr(pub, key)))
    return cells


# --------------------------------------------------------------------------- rows


def _ours_rows(label: str, results: dict[str, dict | None], keys: tuple[str, ...], modes=MODES) -> list[list[str]]:
    """Honest then paper protocol for each exemplar mode (a mode the params do not train: not run)."""
    return [[label, f"ours, {mlabel}, {plabel}"] + [ours_cell(results.get(mode), protocol, k) for k in keys]
            for mode, mlabel in modes for protocol, plabel in PROTOCOLS]


def _not_run_row(label: str, reason: str, keys: tuple[str, ...]) -> list[str]:
    return [label, f"ours: not run ({reason})"] + [NOT_RUN] * len(keys)


def _variant_results(metrics: dict[str, dict], variant: str, modes=MODES) -> dict[str, dict | None]:
    return {mode: ours(metrics, variant, mode) for mode, _ in modes}


def _fp_rows(label: str, variant: str, metrics: dict[str, dict], keys: tuple[str, ...],
             used: list[dict], params: dict[str, Any]) -> list[list[str]]:
    """Our rows of a FineParser variant, or one not-run row saying how to run it."""
    results = _variant_results(metrics, variant)
    if not any(results.values()):
        return [_not_run_row(label, fpv.how_to_run(variant, params), keys)]
    used += [r for r in results.values() if r is not None]
    return _ours_rows(label, results, keys)


def check_fineparser_variants(params: dict[str, Any]) -> None:
    """A FineParser row's variant, when the params train it, must be the ablation the row is
    labelled with (or its label would lie)."""
    settings = params["train"]["variants"]
    for variant in fpv.VARIANTS:
        if variant in listed(params, FINEDIVING_DATA) and variant in settings:
            why = fpv.settings_mismatch(variant, settings[variant])
            if why is not None:
                raise ReportError(f"params train.variants.{variant}: FineParser's tables label it as ablation "
                                  f"{fpv.VARIANTS[variant]} (aqa.report.fineparser_variants), but it has {why}")


# --------------------------------------------------------------------------- captions


def _caption(title: str, used: list[dict], params: dict[str, Any], dataset: str, published: str,
             notes: str = "") -> str:
    real = params["extract_frames"]["frames_root"].get(dataset) is not None
    footage = sorted({m.get("footage") for m in used if m.get("footage")}) or ["real" if real else "stand-in"]
    text = " + ".join(footage)
    if "stand-in" in footage:
        name = "FineDiving" if dataset == FINEDIVING_DATA else "MTL-AQA"
        text += f" (rendered by synthesize_videos, not the real {name} videos"
        text += ", masks drawn by the renderer, not FineDiving-HM's)" if dataset == FINEDIVING_DATA else ")"
    mode_text = ("w/ DN = exemplars of the same dive number (FineParser's code; the published setting), "
                 "w/o DN = any exemplar" if dataset == FINEDIVING_DATA else
                 "w/ DD = our exemplar mode dn, w/o DD = mode nodn (docs/METHODS.md); the published "
                 "rows are w/ DD")
    return (f"{title}. Ours: {text} footage; {seeds_text(used, params)}; protocols: "
            f"honest = {honest_text(params)} evaluated once on "
            "test; paper protocol = best value of each metric over epochs on test, each metric "
            f"independently (the reference code's reporting); {mode_text}. Published: {published}. "
            + (notes + " " if notes else "")
            + "not run: params.yaml does not train that variant or mode (the row says how to run it); "
            "–: not applicable or not reported.")


MASK_NOTE = ("R-l2 x 100; AIoU in % (the paper prints fractions). Masks: SAP's predicted maps on the test "
             "queries' 96 protocol frames at the 112 x 112 crop, per frame, then per dive, then over dives "
             "(docs/METHODS.md \"Mask metrics\"): MAE; F_beta adaptive (beta^2 = 0.3, threshold 2 x mean), "
             "the number beside the paper's; max F_beta over 256 thresholds (ours only); S_m (alpha 0.5).")
PUB = "Xu et al., CVPR 2024 (FineParser), Table {n}, on the real FineDiving-HM footage and masks"


# --------------------------------------------------------------------------- tables


def _header(first: str, keys: tuple[str, ...]) -> list[str]:
    return [first, "Result"] + [LABELS[k] for k in keys]


def _reference_rows(metrics: dict[str, dict], keys: tuple[str, ...]) -> list[list[str]]:
    """The trivial mask references, from the first FineParser metrics file that carries them (they
    depend on the test dives' masks and frames only, not on the variant or mode)."""
    refs = None
    for variant in fpv.VARIANTS:
        for mode, _ in MODES:
            found = metrics.get(fpv.metrics_name(variant, mode))
            if found is not None and isinstance(found.get("mask_references"), dict):
                refs = found["mask_references"]
                break
        if refs is not None:
            break
    rows = []
    for name, label in REFERENCES:
        ref = None if refs is None else refs.get(name)
        if ref is None:
            rows.append([label, "not run (written by the evaluation of a FineParser variant: "
                                "mask_references in its metrics)"] + [NOT_RUN if k in MASK_KEYS else NA for k in keys])
            continue
        rows.append([label, "reference, test queries"]
                    + [_number(k, ref.get(REFERENCE_MASK[k])) if k in MASK_KEYS else NA for k in keys])
    return rows


def table1(metrics: dict[str, dict], params: dict[str, Any]) -> Table:
    keys = ALL_KEYS
    rows, used = [], []
    for key, label, variant in TABLE1_ROWS:
        pub = FINEPARSER_FINEDIVING_HM[key]
        masks = PublishedMasks(**FINEPARSER_MASKS) if key == "fineparser" else None
        rows.append([label, NOT_IMPLEMENTED if variant is None else "published"] + published_cells(pub, masks, keys))
        if variant is None:
            continue
        if variant in fpv.VARIANTS:
            rows += _fp_rows(label, variant, metrics, keys, used, params)
            continue
        results = _variant_results(metrics, variant)
        used += [r for r in results.values() if r is not None]
        rows += _ours_rows(label, results, keys)
    rows += _reference_rows(metrics, keys)
    notes = (MASK_NOTE + " TSA's published row is FineParser's re-run (FineDiving's Table 2 has 0.9203 / "
             "0.3420 w/ DN). The trivial references are scored exactly as SAP (the floor on stand-in "
             "masks).")
    notes = " ".join(filter(None, (notes, same_model_note(params, FINEDIVING_DATA))))
    name = "fineparser_table1"
    return Table(name, _caption(TITLES[name], used, params, FINEDIVING_DATA, PUB.format(n=1), notes),
                 _header("Method", keys), rows)


def table2(mtl_metrics: dict[str, dict], params: dict[str, Any]) -> Table:
    keys = ("rho", "rl2_x100")
    rows, used = [], []
    for key, label, variant in TABLE2_ROWS:
        pub = FINEPARSER_MTL_AQA.get(key)
        rows.append([label, NOT_IMPLEMENTED if variant is None else "published"] + published_cells(pub, None, keys))
        if variant is None:
            continue
        results = _variant_results(mtl_metrics, variant, MTL_MODES)
        if variant == fpv.MAIN and not any(results.values()):
            rows.append(_not_run_row(label, MTL_FINEPARSER, keys))
            continue
        used += [r for r in results.values() if r is not None]
        rows += _ours_rows(label, results, keys, MTL_MODES)
    notes = ("R-l2 x 100; /: not reported by the paper (shown –). I3D+MLP is not in FineParser's Table 2: "
             "no published number beside it.")
    notes = " ".join(filter(None, (notes, same_model_note(params, MTL_AQA, "w/o DD"))))
    name = "fineparser_table2"
    published = "Xu et al., CVPR 2024 (FineParser), Table 2, on the real MTL-AQA videos"
    return Table(name, _caption(TITLES[name], used, params, MTL_AQA, published, notes), _header("Method", keys), rows)


def _row_label(text: str, variant: str) -> str:
    return f"{text} (this project's construction)" if fpv.is_ours(variant) else text


def table3(metrics: dict[str, dict], params: dict[str, Any]) -> Table:
    keys = ALL_KEYS
    rows, used = [], []
    for row, variant in fpv.TABLE3:
        label = _row_label(f"{row}: {MODULE_NAMES[row]}", variant)
        pub, masks = FINEPARSER_MODULES[row]
        rows.append([label, "published"] + published_cells(pub, masks, keys))
        rows += _fp_rows(label, variant, metrics, keys, used, params)
    notes = (MASK_NOTE + " The paper names the modules but not how a row without TAP cuts its steps nor how "
             "a row without SAP feeds TAP: rows A-D are this project's construction (docs/METHODS.md D4: A = "
             "SAP's gate + the I3D stream in uniform thirds; B = the SVE stream in uniform thirds; C = the I3D "
             "stream on ungated features cut at PSNet's boundaries; D = C + the SVE stream); E = the main model.")
    name = "fineparser_table3"
    return Table(name, _caption(TITLES[name], used, params, FINEDIVING_DATA, PUB.format(n=3), notes),
                 _header("Modules", keys), rows)


def table4(metrics: dict[str, dict], params: dict[str, Any]) -> Table:
    keys = ALL_KEYS
    rows, used = [], []
    for duration, variant in fpv.TABLE4:
        label = f"{duration}" + (" (the main model)" if variant == fpv.MAIN else "")
        pub, masks = FINEPARSER_STEP_DURATION[duration]
        rows.append([label, "published"] + published_cells(pub, masks, keys))
        rows += _fp_rows(label, variant, metrics, keys, used, params)
    notes = MASK_NOTE + " The I3D stream keeps its 4 snippets per step in every row."
    name = "fineparser_table4"
    return Table(name, _caption(TITLES[name], used, params, FINEDIVING_DATA, PUB.format(n=4), notes),
                 _header("Duration", keys), rows)


def table5(metrics: dict[str, dict], params: dict[str, Any]) -> Table:
    keys = ("rho", "rl2_x100")
    rows, used = [], []
    ours_by_backbone = dict(fpv.TABLE5)
    for backbone, label in TABLE5_NAMES:
        rows.append([label, "published"] + published_cells(FINEPARSER_SVE_BACKBONE[backbone], None, keys))
        if backbone in ours_by_backbone:
            rows += _fp_rows(label, ours_by_backbone[backbone], metrics, keys, used, params)
        else:
            rows.append([label, f"ours: not available ({NO_WEIGHTS.format(width=WIDTHS[backbone])})"]
                        + [NA] * len(keys))
    label = "I3D-2D (ours, the default; a named deviation)"
    rows.append([label, "published (not in the paper)"] + [NA] * len(keys))
    # the cache holds one SVE backbone's features: the main model read I3D-2D's only if it is the cache's
    cached = params.get("extract_features", {}).get("sve_backbone", "i3d2d")
    if cached != "i3d2d":
        rows.append(_not_run_row(label, f"the cache's SVE features are {cached}'s (extract_features.sve_backbone), "
                                        f"so {fpv.MAIN} read those; set it to i3d2d to fill this row", keys))
    else:
        rows += _fp_rows(label, ours_by_backbone["i3d2d"], metrics, keys, used, params)
    notes = ("R-l2 x 100. The paper's SVE backbone is torchvision's ImageNet ResNet-34, whose weights no "
             "registry reachable here ships: the default is the Kinetics I3D made 2D by summing each 3D "
             "kernel over time, cut at Mixed_4d (512-d, ResNet-34's width); ResNet-34 runs when its weights "
             "file is given by path (docs/METHODS.md \"The SVE backbone\"). The I3D-2D row is the main "
             "model's.")
    name = "fineparser_table5"
    return Table(name, _caption(TITLES[name], used, params, FINEDIVING_DATA, PUB.format(n=5), notes),
                 _header("SVE backbone", keys), rows)


def fineparser_tables(metrics: dict[str, dict], mtl_metrics: dict[str, dict], params: dict[str, Any]) -> list[Table]:
    """The five tables from the checked metrics of FineDiving and MTL-AQA (`load_metrics`)."""
    check_fineparser_variants(params)
    return [table1(metrics, params), table2(mtl_metrics, params), table3(metrics, params),
            table4(metrics, params), table5(metrics, params)]
