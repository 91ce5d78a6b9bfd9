"""Multi-exemplar voting in batched tensor operations.

Models with `encode` / `compare` (every registry model): each distinct dive (query or exemplar)
is encoded once, in chunks, in eval mode, where the encoding of a dive does not depend on the
rest of the batch (BatchNorm uses its running statistics); then the (query, exemplar) pairs of
`batch_size` queries (b * M pairs) are compared in one call on the gathered encodings, and the
scores (delta + exemplar score) are put back into a (b, M) grid and averaged over each query's
exemplars. `encode_rows` can encode the exemplar pool once for several votes of the same model
state (validation, test, test with ground-truth transitions). Other models: one forward per
batch of pairs.
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


@dataclass
class Encoded:
    """Per-dive encodings of the data rows `rows` (sorted, unique) by one model state in eval mode;
    valid only while the weights do not change (`encode_rows` after each epoch's training)."""

    rows: np.ndarray                      # (U,) data rows
    transitions: str                      # the mode the steps were cut with
    tensors: dict[str, torch.Tensor]      # each (U, ...)

    def covers(self, rows: np.ndarray) -> bool:
        rows = np.asarray(rows, dtype=np.int64)
        if not self.rows.size:
            return not rows.size
        pos = np.minimum(np.searchsorted(self.rows, rows), self.rows.size - 1)
        return bool(np.array_equal(self.rows[pos], rows))

    def take(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """The encodings of `rows` (P,), in that order (repeats allowed)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not self.covers(rows):
            raise KeyError(f"rows {sorted(set(rows.tolist()) - set(self.rows.tolist()))[:5]} were not encoded")
        idx = torch.as_tensor(np.searchsorted(self.rows, rows))
        return {k: v[idx.to(v.device)] for k, v in self.tensors.items()}


def amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The autocast dtype of params train.amp on `device`: on CUDA bfloat16 where the GPU supports
    it, else float16 (trained with a GradScaler); None (float32) on CPU or without amp."""
    if not (amp and device.type == "cuda"):
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast_for(device: torch.device, amp: bool):
    """Mixed precision on CUDA when asked (`amp_dtype`); a no-op context elsewhere."""
    dtype = amp_dtype(device, amp)
    if dtype is not None:
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def can_encode(model: torch.nn.Module) -> bool:
    return callable(getattr(model, "encode_modes", None)) and callable(getattr(model, "compare", None))


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def encode_rows(model: torch.nn.Module, data: DiveData, rows: np.ndarray, modes: tuple[str, ...] = ("pred",), *,
                batch_size: int, amp: bool = False) -> dict[str, Encoded]:
    """{mode: Encoded} of the distinct `rows` (view 0), `batch_size` dives per encode call.

    The work that does not depend on the transitions (PSNet on the pooled features and maps) is
    done once for all `modes`.
    """
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    maps = uses_maps(model)
    parts: dict[str, list[dict[str, torch.Tensor]]] = {m: [] for m in modes}
    chunks = [rows[start:start + batch_size] for start in range(0, rows.size, batch_size)]
    with _eval_mode(model):
        for (batch,) in data.fetch((data.request(c, with_maps=maps),) for c in chunks):
            with autocast_for(data.device, amp):
                enc = model.encode_modes(batch, tuple(modes))
            for m in modes:
                parts[m].append(enc[m])
    return {m: Encoded(rows, m, {k: torch.cat([p[k] for p in parts[m]]) for k in parts[m][0]} if parts[m] else {})
            for m in modes}


def shared_encodings(model: torch.nn.Module, data: DiveData, rows: np.ndarray, *, batch_size: int,
                     amp: bool = False) -> dict[str, Encoded | None]:
    """{"pred": .., "gt": ..} encodings of `rows` for several votes of one model state (None for
    a model without encode: each vote then runs its own forwards)."""
    if not can_encode(model):
        return {"pred": None, "gt": None}
    return encode_rows(model, data, rows, ("pred", "gt"), batch_size=batch_size, amp=amp)


@torch.no_grad()
def vote(model: torch.nn.Module, data: DiveData, query_rows: np.ndarray, exemplar_rows: np.ndarray, *,
         batch_size: int, transitions: str = "pred", amp: bool = False, encoded: Encoded | None = None) -> Votes:
    """Voted predictions for `query_rows` (N,) against `exemplar_rows` (N, M), -1 = no exemplar.

    `encoded`: encodings by `encode_rows` of the model in its current state, covering every
    query and exemplar row; computed here when not given.
    """
    query_rows = np.asarray(query_rows, dtype=np.int64)
    exemplar_rows = np.asarray(exemplar_rows, dtype=np.int64)
    n, m = exemplar_rows.shape
    if n != query_rows.size:
        raise ValueError(f"{query_rows.size} queries but exemplars for {n}")
    if n and not (exemplar_rows >= 0).any(axis=1).all():
        raise ValueError("every query needs at least one exemplar")
    if not can_encode(model):
        return vote_by_forward(model, data, query_rows, exemplar_rows, batch_size=batch_size,
                               transitions=transitions, amp=amp)
    if encoded is None:
        needed = np.concatenate([query_rows, exemplar_rows[exemplar_rows >= 0]])
        encoded = encode_rows(model, data, needed, (transitions,), batch_size=batch_size, amp=amp)[transitions]
    elif encoded.transitions != transitions:
        raise ValueError(f"encodings cut with {encoded.transitions!r} transitions, the vote asks for {transitions!r}")
    with _eval_mode(model), autocast_for(data.device, amp):
        per_ex = _vote_grid(data, query_rows, exemplar_rows, batch_size, lambda q, e: model.compare(
            encoded.take(q), encoded.take(e), reverse=False)["delta"])
    pred_t = None
    if "pred_transitions" in encoded.tensors and n:
        pred_t = encoded.take(query_rows)["pred_transitions"].cpu().numpy().astype(np.int64)
    return Votes(pred=np.nanmean(per_ex, axis=1) if n else np.empty(0), per_exemplar=per_ex,
                 pred_transitions=pred_t)


@torch.no_grad()
def vote_by_forward(model: torch.nn.Module, data: DiveData, query_rows: np.ndarray, exemplar_rows: np.ndarray, *,
                    batch_size: int, transitions: str = "pred", amp: bool = False) -> Votes:
    """`vote` for models without encode / compare: one forward over the b * M pairs of each chunk."""
    query_rows = np.asarray(query_rows, dtype=np.int64)
    exemplar_rows = np.asarray(exemplar_rows, dtype=np.int64)
    maps = uses_maps(model)
    pair_t: list[torch.Tensor] = []   # the pairs' predicted query transitions, in pair order

    def delta(q_flat: np.ndarray, e_flat: np.ndarray) -> torch.Tensor:
        out = model(data.batch(q_flat, with_maps=maps), data.batch(e_flat, with_maps=maps), transitions=transitions)
        if "pred_transitions" in out:
            pair_t.append(out["pred_transitions"].cpu())
        return out["delta"]

    with _eval_mode(model), autocast_for(data.device, amp):
        per_ex = _vote_grid(data, query_rows, exemplar_rows, batch_size, delta)
    pred_t = None
    if pair_t:
        # The query's transitions come from the query alone: take its first pair's.
        counts = (exemplar_rows >= 0).sum(axis=1)
        pred_t = torch.cat(pair_t).numpy()[np.concatenate([[0], np.cumsum(counts)[:-1]])].astype(np.int64)
    return Votes(pred=np.nanmean(per_ex, axis=1) if len(query_rows) else np.empty(0), per_exemplar=per_ex,
                 pred_transitions=pred_t)


def _vote_grid(data: DiveData, query_rows: np.ndarray, exemplar_rows: np.ndarray, batch_size: int,
               delta_of) -> np.ndarray:
    """(N, M) delta + exemplar score (NaN where no exemplar); `delta_of(q_flat, e_flat)` gives the
    (P,) deltas of the pairs of `batch_size` queries, row-major over their (b, M) grid."""
    n, m = exemplar_rows.shape
    per_ex = np.full((n, m), np.nan)
    for start in range(0, n, batch_size):
        q, ex = query_rows[start:start + batch_size], exemplar_rows[start:start + batch_size]
        valid = ex >= 0                                   # (b, M)
        q_flat, e_flat = np.repeat(q, m)[valid.ravel()], ex[valid]   # (P,) each
        delta = delta_of(q_flat, e_flat).float().reshape(-1)
        scores = delta + data.score[torch.as_tensor(e_flat, device=data.device)]
        per_ex[start:start + len(q)][valid] = scores.cpu().numpy()
    return per_ex


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
                  amp: bool = False, encoded: Encoded | None = None) -> tuple[dict[str, float], Votes]:
    """Vote for `query_rows` with exemplars from `pool_rows`; return (metrics, votes)."""
    ex = exemplar_rows(data, query_rows, pool_rows, mode, num_exemplars, seed)
    votes = vote(model, data, query_rows, ex, batch_size=batch_size, transitions=transitions, amp=amp,
                 encoded=encoded)
    return votes_metrics(votes, data, query_rows), votes
