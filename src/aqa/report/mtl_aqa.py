"""The MTL-AQA table of make_report: I3D+MLP, USDL, MUSDL and CoRe, ours beside the published numbers.

Reads `reports/metrics/mtl_aqa/<variant>-<mode>.json` (the same JSON as FineDiving's, loaded and
checked against the current params by `aqa.report.tables.load_metrics`) and builds
`mtl_aqa.{md,csv,tex}`. Rows are keyed by variant name (= method name, as in the FineDiving
tables); a listed method the params do not train on MTL-AQA shows "not run"; a method that needs
step labels (TSA; FineParser also needs masks) shows "not applicable" with the reason, since
MTL-AQA annotates neither; any other variant params train on MTL-AQA gets a row of its own.

Published numbers (BASELINES.md section 2). Columns follow CoRe's paper: "w/o DD" and "w/ DD"
(with the difficulty degree: CoRe's exemplars of the same DD and regression of score / DD;
USDL-DD; MUSDL, which always multiplies by DD). Ours: exemplar mode nodn / dn (dn: exemplars
of the same dive number, and the score / DD readings of BASELINES D2 and D8), docs/METHODS.md.
"""

from __future__ import annotations

from typing import Any

from aqa.data.datasets import MTL_AQA, dataset_spec
from aqa.report.published import FINEPARSER_MTL_AQA, Published
from aqa.report.tables import PROTOCOLS, Table, both_protocols, ours_cell, published_cell, same_model_note, seeds_text
from aqa.trained import listed

NAME = "mtl_aqa"
MODES = (("nodn", "w/o DD"), ("dn", "w/ DD"))
KEYS = ("rho", "rl2_x100")

# (variant, label); the four baselines the issue asks for, then the step-based methods (not applicable).
ROWS = (("i3d_mlp", "I3D+MLP"), ("usdl", "USDL"), ("musdl", "MUSDL"), ("core", "CoRe"), ("tsa", "TSA"),
        ("fineparser", "FineParser"))
# Labels of other variants params may train on MTL-AQA (the FineDiving tables' names).
OTHER_LABELS = {"fr": "F+R", "fr_asym": "F+R*", "fr_dn": "F+R#", "fsr": "F+S+R"}

# By mode: "nodn" = w/o DD, "dn" = w/ DD. None = not reported. R-l2 x 100.
PUBLISHED: dict[str, dict[str, Published]] = {
    # CoRe paper, w/ DD baseline (via paperswithcode; no w/o DD number in BASELINES.md)
    "i3d_mlp": {"dn": Published(0.9381, 0.394)},
    # USDL paper (CVPR 2020; rho only, no R-l2); w/ DD: CoRe paper, reprinted in FineParser Table 2
    "usdl": {"nodn": Published(0.9066, None), "dn": FINEPARSER_MTL_AQA["usdl"]},
    # MUSDL always multiplies by DD: CoRe's w/ DD row (the USDL paper's 0.9273 too)
    "musdl": {"dn": FINEPARSER_MTL_AQA["musdl"]},
    # CoRe paper: w/o DD (via paperswithcode) and w/ DD (reprinted in FineParser Table 2)
    "core": {"nodn": Published(0.9341, 0.365), "dn": FINEPARSER_MTL_AQA["core"]},
    # FineParser paper, Table 2 (with DD, like the rows it is compared with)
    "fineparser": {"dn": FINEPARSER_MTL_AQA["fineparser"]},
}
SOURCES = ("Published: USDL w/o DD from the USDL paper (Tang et al., CVPR 2020; rho only); I3D+MLP, USDL, "
           "MUSDL and CoRe w/ DD and CoRe w/o DD from CoRe (Yu et al., ICCV 2021; its w/ DD rows are "
           "reprinted in FineParser's Table 2); FineParser from FineParser (Xu et al., CVPR 2024), Table 2")

# Methods whose ours row cannot exist on MTL-AQA, and why (registry.needs_step_labels covers TSA;
# FineParser is not a method of the registry yet).
NOT_APPLICABLE = {
    "tsa": "needs step labels (the step transitions its PSNet learns), which MTL-AQA does not annotate",
    "fineparser": "needs step labels and human masks (FineDiving-HM), which MTL-AQA does not annotate",
}


def _not_applicable(variant: str, params: dict[str, Any]) -> str | None:
    from aqa.models.registry import METHODS, needs_step_labels

    if variant in NOT_APPLICABLE:
        return NOT_APPLICABLE[variant]
    method = params["train"]["variants"].get(variant, {}).get("method", variant)
    if method in METHODS and needs_step_labels(method) and not dataset_spec(MTL_AQA).step_labels:
        return "needs step labels, which MTL-AQA does not annotate"
    return None


def _caption(used: list[dict], params: dict[str, Any]) -> str:
    real_frames = params["extract_frames"]["frames_root"].get(MTL_AQA) is not None
    footage = sorted({m.get("footage") for m in used if m.get("footage")}) or ["real" if real_frames else "stand-in"]
    source = params["synthesize_videos"][MTL_AQA]["source_annotations"]
    text = " + ".join(footage)
    if "stand-in" in footage:
        what = "the real MTL-AQA annotations" if source else "a sampled MTL-AQA-shaped annotation set"
        text += f" (rendered by synthesize_videos for {what}, not the real MTL-AQA videos)"
    return (f"Comparison on MTL-AQA. Ours: {text} footage; {seeds_text(used, params)}; "
            f"{both_protocols(params)}. Columns: w/o DD = ours in "
            "exemplar mode nodn, w/ DD = ours in mode dn (exemplars of the same dive number; "
            f"docs/METHODS.md). {SOURCES}. R-l2 x 100. "
            "not run: params.yaml does not train that variant on MTL-AQA (datasets.variants.mtl_aqa); "
            "not applicable: the method needs annotations MTL-AQA lacks; –: not reported."
            + (" " + same_model_note(params, MTL_AQA, "w/o DD")).rstrip())


def mtl_aqa_table(metrics: dict[str, dict], params: dict[str, Any]) -> Table:
    """The table from the MTL-AQA metrics by `<variant>-<mode>` (as `load_metrics` returns them)."""
    header = ["Method", "Result"] + [f"{ml} {'rho' if k == 'rho' else 'R-l2'}" for _, ml in MODES for k in KEYS]
    trained = listed(params, MTL_AQA)
    rows_spec = list(ROWS) + [(v, OTHER_LABELS.get(v, v)) for v in trained if v not in dict(ROWS)]
    rows, used = [], []
    for variant, label in rows_spec:
        pub = PUBLISHED.get(variant, {})
        rows.append([label, "published"] + [published_cell(pub.get(mode), k) for mode, _ in MODES for k in KEYS])
        reason = _not_applicable(variant, params)
        if reason is not None:
            rows.append([label, f"ours: not applicable ({reason})"] + ["not applicable"] * (len(header) - 2))
            continue
        results = {mode: metrics.get(f"{variant}-{mode}") for mode, _ in MODES}
        used += [r for r in results.values() if r is not None]
        for protocol, plabel in PROTOCOLS:
            rows.append([label, plabel] + [ours_cell(results[mode], protocol, k) for mode, _ in MODES for k in KEYS])
    return Table(NAME, _caption(used, params), header, rows)

