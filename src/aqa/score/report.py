"""`aqa score`'s output: the result as text for a person, and as JSON (--json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aqa.io import write_json_atomic


def _f(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def format_result(r: dict[str, Any]) -> str:
    m, s, clip = r["model"], r["score"], r["clip"]
    lines = [f"{clip['path']}: dive {r['dive_number']}, DD {_f(r['difficulty'], 1)}, {clip['num_frames']} frames "
             f"({clip['first_frame']}..{clip['last_frame']})",
             f"model: {m['folder']} seed {m['seed']} ({m['method']}, exemplars {m['exemplar_mode']}; epoch "
             f"{m['epoch']}, validation rho {_f(m['validation_rho'], 3)}, test rho {_f(m['test_rho'], 3)}, "
             f"test RMSE {_f(m['test_rmse'])})"]
    if s["spread"] is None:
        lines.append(f"predicted score: {s['predicted']:.2f} (direct prediction, no exemplars)")
    else:
        sp = s["spread"]
        lines.append(f"predicted score: {s['predicted']:.2f} (mean over {sp['num_exemplars']} exemplars; "
                     f"spread: std {sp['std']:.2f}, min {sp['min']:.2f}, max {sp['max']:.2f})")
    if r["steps"]:
        lines.append("predicted steps (clip frames): " + ", ".join(
            f"{st['name']} {st['first_frame']}-{st['last_frame']}" for st in r["steps"]))
    else:
        lines.append(f"predicted steps: none ({m['method']} does not segment the dive)")
    if r["step_account"]:
        lines.append("per-step account (mean over exemplars of each step's part of the difference "
                     "predicted - exemplar score): " + ", ".join(f"{k} {v:+.2f}" for k, v in r["step_account"].items()))
    if r["exemplars"]:
        lines.append("exemplars (true score -> this dive's score from it" +
                     ("; per-step parts of the difference)" if r["step_account"] else ")"))
        for e in r["exemplars"]:
            parts = ""
            if "step_contributions" in e:
                parts = "  [" + ", ".join(f"{k} {v:+.2f}" for k, v in e["step_contributions"].items()) + "]"
            lines.append(f"  {e['key']}: true {e['true_score']:.2f} (DD {e['difficulty']:.1f}) -> "
                         f"{e['predicted']:.2f} ({e['difference']:+.2f}){parts}")
    return "\n".join(lines)


def write_json(r: dict[str, Any], path: Path) -> None:
    write_json_atomic(Path(path), r)
