"""Multi-exemplar voting in batched tensor operations.

A chunk of `batch_size` queries with M exemplars each becomes one flat batch of (b * M)
query/exemplar pairs, one forward pass; the scores (delta + exemplar score) are put back into a
(b, M) grid and averaged over each query's exemplars.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from aqa.train.data import DiveData, uses_maps
from aqa.train.exemplars import eval_exemplars


@dataclass
class Votes:
    pred: np.ndarray                      # (N,) voted score
    per_exemplar: np.ndarray              # (N, M) delta + exemplar score, NaN where no exemplar
    pred_transitions: np.ndarray | None   # (N, 2) the query's predicted transitions, if any


def autocast_for(device: torch.device, amp: bool):
    """Mixed precision on CUDA when asked; a no-op context elsewhere."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


@torch.no_grad()
def vote(model: torch.nn.Module, data: DiveData, query_rows: np.ndarray, exemplar_rows: np.ndarray, *,
         batch_size: int, transitions: str = "pred", amp: bool = False) -> Votes:
    """Voted predictions for `query_rows` (N,) against `exemplar_rows` (N, M), -1 = no exemplar."""
    query_rows = np.asarray(query_rows, dtype=np.int64)
    exemplar_rows = np.asarray(exemplar_rows, dtype=np.int64)
    n, m = exemplar_rows.shape
    if n != query_rows.size:
        raise ValueError(f"{query_rows.size} queries but exemplars for {n}")
    if n and not (exemplar_rows >= 0).any(axis=1).all():
        raise ValueError("every query needs at least one exemplar")
    was_training = model.training
    model.eval()
    per_ex = np.full((n, m), np.nan)
    pred_t = None
    maps = uses_maps(model)
    for start in range(0, n, batch_size):
        q, ex = query_rows[start:start + batch_size], exemplar_rows[start:start + batch_size]
        valid = ex >= 0                                   # (b, M)
        q_flat = np.repeat(q, m)[valid.ravel()]           # (P,) pairs, row-major over (b, M)
        e_flat = ex[valid]                                # (P,)
        with autocast_for(data.device, amp):
            out = model(data.batch(q_flat, with_maps=maps), data.batch(e_flat, with_maps=maps),
                        transitions=transitions)
        scores = out["delta"].float().reshape(-1) + data.score[torch.as_tensor(e_flat, device=data.device)]
        grid = per_ex[start:start + len(q)]
        grid[valid] = scores.cpu().numpy()
        if "pred_transitions" in out:
            if pred_t is None:
                pred_t = np.zeros((n, 2), dtype=np.int64)
            # The query's transitions come from the query alone: take its first pair's.
            first = np.concatenate([[0], np.cumsum(valid.sum(axis=1))[:-1]])
            pred_t[start:start + len(q)] = out["pred_transitions"].cpu().numpy()[first]
    model.train(was_training)
    return Votes(pred=np.nanmean(per_ex, axis=1) if n else np.empty(0), per_exemplar=per_ex,
                 pred_transitions=pred_t)


def votes_metrics(votes: Votes, data: DiveData, query_rows: np.ndarray) -> dict[str, float]:
    """rho, rl2, l2 and, where the model predicts transitions, aiou50 / aiou75 (fractions)."""
    from aqa.metrics import aiou, regression_metrics

    true = data.score[torch.as_tensor(np.asarray(query_rows), device=data.device)].cpu().numpy()
    out = {k: float(v) for k, v in regression_metrics(votes.pred, true).items()}
    if votes.pred_transitions is not None:
        true_t = data.transitions[torch.as_tensor(np.asarray(query_rows), device=data.device)].cpu().numpy()
        known = (true_t >= 0).all(axis=1)
        if known.any():
            a = aiou(votes.pred_transitions[known], true_t[known], thresholds=(0.5, 0.75))
            out["aiou50"], out["aiou75"] = float(a[0.5]), float(a[0.75])
    return out


def exemplar_rows(data: DiveData, query_rows: np.ndarray, pool_rows: np.ndarray, mode: str,
                  num_exemplars: int, seed: int) -> np.ndarray:
    """(N, M) data rows of the evaluation exemplars of `query_rows` drawn from `pool_rows`, -1 pad."""
    keys = np.asarray(data.keys, dtype=object)
    actions = data.dives["action_type"].astype(str).to_numpy()
    pos = eval_exemplars(list(keys[query_rows]), actions[query_rows], list(keys[pool_rows]),
                         actions[pool_rows], mode, num_exemplars, seed)
    return np.where(pos >= 0, np.asarray(pool_rows)[np.maximum(pos, 0)], -1)


def evaluate_rows(model: torch.nn.Module, data: DiveData, query_rows: np.ndarray, pool_rows: np.ndarray, *,
                  mode: str, num_exemplars: int, seed: int, batch_size: int, transitions: str = "pred",
                  amp: bool = False) -> tuple[dict[str, float], Votes]:
    """Vote for `query_rows` with exemplars from `pool_rows`; return (metrics, votes)."""
    ex = exemplar_rows(data, query_rows, pool_rows, mode, num_exemplars, seed)
    votes = vote(model, data, query_rows, ex, batch_size=batch_size, transitions=transitions, amp=amp)
    return votes_metrics(votes, data, query_rows), votes
