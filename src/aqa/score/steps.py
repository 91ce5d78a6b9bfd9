"""The three steps of a dive in the clip's own frame numbers, and each step's share of a score
difference, for the methods whose difference is a sum over steps.

Step ranges: PSNet's predicted transitions (the loader's t = first slot of a step - 1, on the
96-slot scale) as the model cuts the steps (`safe_boundaries` of b = t + 1), each slot mapped back
to the clip frame it was sampled from (`sample_frame_numbers`): take-off = the clip's first frame
up to the frame before slot b1's, flight up to the frame before slot b2's, entry to the last frame.

Per-step account: TSA's difference is the mean over its 3 x fix decoded tokens of one MLP value
per token, so step k contributes the sum of its fix token values / (3 x fix); F+S+R's is the mean
of three per-step regressions, so step k contributes its regression / 3. The contributions add
up to the model's difference (delta) for that exemplar exactly, up to float rounding.
"""

from __future__ import annotations

import numpy as np
import torch

from aqa.data.protocol import sample_frame_numbers
from aqa.models.psnet import safe_boundaries

STEP_NAMES = ("take-off", "flight", "entry")


def step_frames(pred_transitions: np.ndarray, first: int, last: int, num_slots: int = 96) -> list[tuple[int, int]]:
    """[(first frame, last frame)] of the 3 steps; `pred_transitions` (2,) on the loader's scale."""
    b = safe_boundaries(torch.as_tensor(np.asarray(pred_transitions) + 1).view(1, 2), num_slots)[0].tolist()
    frames = sample_frame_numbers(first, last, num_slots)
    starts = [first, int(frames[b[0]]), int(frames[b[1]])]
    ends = [max(s, e - 1) for s, e in zip(starts, starts[1:])] + [last]
    return list(zip(starts, ends))


def supports_step_account(model: torch.nn.Module) -> bool:
    return getattr(model, "method", None) in ("tsa", "fsr")


@torch.no_grad()
def step_contributions(model: torch.nn.Module, enc_q: dict, enc_e: dict) -> torch.Tensor:
    """(E, 3) each step's contribution to delta(query, exemplar) for E pairs (rows of enc_q / enc_e),
    summing over steps to `model.compare(enc_q, enc_e)["delta"]`. Eval mode expected."""
    method = getattr(model, "method", None)
    if method == "tsa":
        tq, mem = enc_q["tokens"], enc_e["memory"]            # (E, 3, fix, C), (E, 3, fix*h*w, C)
        n, _, fix, dim = tq.shape
        dec = model.decoder(tq.reshape(n * 3, fix, dim), mem.reshape(n * 3, mem.shape[2], dim))
        per_token = model.regressor.mlp(dec.view(n, 3 * fix, dim)).squeeze(-1)   # (E, 3*fix)
        return per_token.view(n, 3, fix).sum(-1) / (3 * fix)                      # (E, 3)
    if method == "fsr":
        sq, se = enc_q["steps"], enc_e["steps"]                                   # (E, 3, C)
        return model.regressor(torch.cat([sq, se], -1)).squeeze(-1) / 3           # (E, 3)
    raise TypeError(f"{method}: its score difference is not a sum over steps")
