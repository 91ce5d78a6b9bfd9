"""CoRe (Yu et al., ICCV 2021): contrastive regression with a group-aware regression tree.

Read from the authors' code (yuxumin/CoRe: models/RegressTree.py, utils/Group_helper.py,
tools/{helper,builder,runner}.py, datasets/MTLPair.py, models/Backbone.py) and
../shared/docs/BASELINES.md section 6; decisions in docs/METHODS.md ("CoRe").

A pairwise model: `encode(batch)` keeps each dive's clip-mean feature and its reference value
r (the score y, or the execution part c = y / DD with use_dd); `compare(enc_q, enc_e)` feeds
x = [f_e, f_q, r_e / theta] (exemplar first, as the source's test direction) to the tree, which
classifies Delta = r_q - r_e into one of L = 2^(depth-1) groups (leaves) and regresses its
position inside the group. The groups' edges come from the training pool's pair differences
(`pair_differences`, `group_edges`) and are part of the config, so a checkpoint rebuilds them.
`delta` is what the host's voting adds to the exemplar's score: Delta_hat (raw) or
(Delta_hat + c_e) * DD_q - y_e (use_dd), so the vote is CoRe's score exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aqa.models.direct import difficulty_of, fp32, video_feature
from aqa.models.tsa import Encoding, PairwiseModel


# --------------------------------------------------------------------------- groups


def pair_differences(values: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """|v_i - v_j| over every unordered pair i < j of dives in the same group (all pairs when
    `groups` is None), sorted ascending (Group_helper's `dataset`)."""
    values = np.asarray(values, dtype=np.float64)
    if groups is None:
        groups = np.zeros(values.size, dtype=np.int64)
    groups = np.asarray(groups)
    out = []
    for g in np.unique(groups):
        v = values[groups == g]
        i, j = np.triu_indices(v.size, 1)
        out.append(np.abs(v[i] - v[j]))
    return np.sort(np.concatenate(out)) if out else np.empty(0)


def group_edges(differences: np.ndarray, depth: int = 5) -> tuple[float, ...]:
    """The inner edges e_1..e_{H-1} (H = 2^(depth-1) / 2 positive leaves) of the groups:
    e_i = D[int(i / H * (n - 1))] over the sorted differences D (the source's index rule);
    e_0 = 0 and e_H = theta are fixed."""
    d = np.sort(np.asarray(differences, dtype=np.float64))
    if d.size == 0:
        raise ValueError("CoRe: no pair differences to build the groups from (every group of the "
                         "training pool has a single dive)")
    half = 2 ** (depth - 1) // 2
    return tuple(float(d[int((i / half) * (d.size - 1))]) for i in range(1, half))


def leaf_bounds(edges: tuple[float, ...], theta: float) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of the L leaves, float64: leaf H + i = [e_i, e_(i+1)] with e_0 = 0, e_H = theta,
    leaf H - 1 - i its mirror [-e_(i+1), -e_i]."""
    e = np.array([0.0, *edges, float(theta)])
    lo_pos, hi_pos = e[:-1], e[1:]
    return np.concatenate([-hi_pos[::-1], lo_pos]), np.concatenate([-lo_pos[::-1], hi_pos])


def leaf_targets(delta: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(leaf (B,) long, offset (B,) float, member (B, L) bool) of true differences `delta` (B,).

    A delta >= 0 belongs to the leaf with lo <= delta < hi, a negative one to lo < delta <= hi
    (Group_helper.produce_label). Offset = (delta - lo) / (hi - lo), or delta - lo for a
    zero-width leaf. A delta in no leaf (>= theta, or exactly -theta) has no member row: its
    class target is leaf 0 (the source's argmax of an all-zero column) and no offset target."""
    d = delta.double().unsqueeze(1)                       # (B, 1)
    lo, hi = lo.double().to(d.device), hi.double().to(d.device)   # (L,)
    member = torch.where(d >= 0, (d >= lo) & (d < hi), (d > lo) & (d <= hi))  # (B, L)
    leaf = torch.where(member.any(1), member.int().argmax(1), torch.zeros_like(member[:, 0], dtype=torch.long))
    width = (hi - lo)[leaf]
    off = d.squeeze(1) - lo[leaf]
    off = torch.where(width > 0, off / torch.where(width > 0, width, torch.ones_like(width)), off)
    return leaf.long(), off.float(), member


def infer_delta(leaf_logp: torch.Tensor, leaf_off: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Delta_hat (B,): the most probable leaf's lo + width * offset (lo + offset when zero-width)."""
    leaf = leaf_logp.argmax(1)                                                  # (B,)
    off = leaf_off.gather(1, leaf.unsqueeze(1)).squeeze(1).float()
    lo, hi = lo.to(off.device)[leaf].float(), hi.to(off.device)[leaf].float()
    width = hi - lo
    return torch.where(width > 0, lo + width * off, lo + off)


# --------------------------------------------------------------------------- the tree


class NodeLinear(nn.Module):
    """`nodes` independent Linear(in, out) layers applied to (B, nodes, in) -> (B, nodes, out)
    (the source's grouped 1x1 Conv1d), with its default init U(-1/sqrt(in), 1/sqrt(in))."""

    def __init__(self, nodes: int, in_dim: int, out_dim: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(nodes, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(nodes, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bni,nio->bno", x, self.weight) + self.bias


class RegressionTree(nn.Module):
    """x (B, in) -> (leaf log-probabilities (B, L), leaf offsets (B, L)), L = 2^(depth-1).

    h = ReLU(Linear(in, hidden)); level l has 2^l nodes: each gives its two branch logits from
    its state (before the level's transform) and its two children's states (ReLU(Linear(hidden,
    2 hidden))); child = 2 * parent + branch; log P(leaf) = sum of the log-softmaxed branches on
    its path; each leaf's own Linear(hidden, 1) gives its offset."""

    def __init__(self, in_dim: int, hidden: int = 256, depth: int = 5):
        super().__init__()
        if depth < 2:
            raise ValueError(f"CoRe: tree depth must be >= 2, got {depth}")
        self.hidden = hidden
        self.first = nn.Linear(in_dim, hidden)
        self.branch = nn.ModuleList(NodeLinear(2 ** d, hidden, 2) for d in range(depth - 1))
        self.grow = nn.ModuleList(NodeLinear(2 ** d, hidden, 2 * hidden) for d in range(depth - 1))
        self.leaf = NodeLinear(2 ** (depth - 1), hidden, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        state = F.relu(self.first(x)).unsqueeze(1)                 # (B, 1, H)
        logp = torch.zeros(b, 1, device=x.device, dtype=state.dtype)
        for branch, grow in zip(self.branch, self.grow):
            step = F.log_softmax(branch(state), -1)                # (B, n, 2)
            logp = (logp.unsqueeze(-1) + step).reshape(b, -1)      # (B, 2n): child 2p + branch
            state = F.relu(grow(state)).reshape(b, -1, self.hidden)  # (B, 2n, H)
        return logp, self.leaf(state).squeeze(-1)                  # (B, L), (B, L)


# --------------------------------------------------------------------------- the model


@dataclass
class CoReConfig:
    feature_dim: int = 1024
    hidden: int = 256
    depth: int = 5                          # RT_depth: 4 decision levels, 16 leaves
    use_dd: bool = False                    # True: r = y / DD, score = (Delta_hat + c_e) * DD_q
    theta: float | None = None              # score_range; None: 30 with use_dd, 100 without (D7)
    edges: tuple[float, ...] | None = None  # e_1..e_{L/2-1} from the training pool (core_pool_settings)

    @property
    def score_range(self) -> float:
        if self.theta is not None:
            return float(self.theta)
        return 30.0 if self.use_dd else 100.0


class CoReModel(PairwiseModel):
    """encode -> {video (B, 1024), ref (B,), score (B,), dd (B,)}; compare -> delta, leaf_logp,
    leaf_off (and delta_rev, leaf_logp_rev, leaf_off_rev with reverse)."""

    def __init__(self, cfg: CoReConfig = CoReConfig()):
        super().__init__()
        leaves = 2 ** (cfg.depth - 1)
        if cfg.edges is None:
            raise ValueError("CoRe needs `edges`, the group edges of the training pool: "
                             "aqa.models.core.core_pool_settings(...) computes them")
        if len(cfg.edges) != leaves // 2 - 1:
            raise ValueError(f"CoRe depth {cfg.depth} needs {leaves // 2 - 1} edges, got {len(cfg.edges)}")
        e = [0.0, *cfg.edges, cfg.score_range]
        if any(a > b for a, b in zip(e, e[1:])):
            raise ValueError(f"CoRe edges must rise from 0 to theta {cfg.score_range}, got {list(cfg.edges)}")
        self.cfg = cfg
        self.tree = RegressionTree(2 * cfg.feature_dim + 1, cfg.hidden, cfg.depth)
        self.bounds = leaf_bounds(tuple(cfg.edges), cfg.score_range)  # (lo, hi) float64, from the config

    def _bounds(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(lo, hi) (L,) float64 on `device`: exact leaf membership whatever the model's dtype."""
        return tuple(torch.as_tensor(b, device=device) for b in self.bounds)

    def reference(self, batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ref, score, dd) (B,) float32: r = y or y / DD."""
        score = batch["score"].to(device).float()
        if not self.cfg.use_dd:
            return score, score, torch.ones_like(score)
        dd = difficulty_of(batch, "core", device)
        return score / dd, score, dd

    def encode_modes(self, batch: dict, modes: tuple[str, ...]) -> dict[str, Encoding]:
        self._check_modes(modes)  # no segmentation: accepted and unused
        pooled, _ = self.backbone(batch)
        feat = video_feature(pooled)  # (B, 1024)
        ref, score, dd = self.reference(batch, feat.device)
        return {m: {"video": feat, "ref": ref, "score": score, "dd": dd} for m in modes}

    def _direction(self, first: Encoding, second: Encoding) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`first` as the exemplar: (leaf_logp, leaf_off, predicted score of `second` minus the
        score of `first`). Reads first's ref and second's DD, never second's score."""
        theta = self.cfg.score_range
        x = torch.cat([first["video"], second["video"], (first["ref"] / theta).unsqueeze(1).to(first["video"].dtype)],
                      1)                                                   # (B, 2 * 1024 + 1)
        logp, off = self.tree(x)                                           # (B, L) each
        d_hat = infer_delta(logp, off, *self._bounds(logp.device))         # (B,)
        if self.cfg.use_dd:
            d_hat = (d_hat + first["ref"].float()) * second["dd"].float() - first["score"].float()
        return logp, off, d_hat

    def compare(self, enc_q: Encoding, enc_e: Encoding, *, reverse: bool = True) -> dict[str, torch.Tensor]:
        logp, off, delta = self._direction(enc_e, enc_q)
        out = {"delta": delta, "leaf_logp": logp, "leaf_off": off}
        if reverse:
            logp, off, delta = self._direction(enc_q, enc_e)
            out.update(delta_rev=delta, leaf_logp_rev=logp, leaf_off_rev=off)
        return out

    def tree_loss(self, leaf_logp: torch.Tensor, leaf_off: torch.Tensor, delta: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(NLL of the true leaf, sum over leaves of the mean squared offset error of the leaf's
        members) of one direction; `delta` (B,) the true reference differences."""
        leaf, target, member = leaf_targets(delta, *self._bounds(delta.device))
        nll = F.nll_loss(leaf_logp.float(), leaf.to(leaf_logp.device))
        member = member.float()                                                    # (B, L)
        sq = (leaf_off.float() - target.unsqueeze(1)) ** 2 * member                # (B, L)
        per_leaf = sq.sum(0) / member.sum(0).clamp(min=1)                         # (L,), 0 if empty
        return nll, per_leaf.sum()

    def loss(self, out: dict[str, torch.Tensor], query: dict, exemplar: dict
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        device = out["leaf_logp"].device
        rq, re = self.reference(query, device)[0], self.reference(exemplar, device)[0]
        with fp32(device):
            terms = {}
            terms["nll"], terms["off"] = self.tree_loss(out["leaf_logp"], out["leaf_off"], rq - re)
            if "leaf_logp_rev" in out:
                terms["nll_rev"], terms["off_rev"] = self.tree_loss(out["leaf_logp_rev"], out["leaf_off_rev"], re - rq)
            total = sum(terms.values())
        return total, {k: float(v.detach()) for k, v in terms.items()}


def core_pool_settings(score: np.ndarray, difficulty: np.ndarray, action: np.ndarray, mode: str,
                       depth: int = 5) -> dict:
    """The CoRe config a training pool and exemplar mode give (D7, D8): nodn = raw scores,
    theta 100, groups from all pairs; dn = y / DD, theta 30, groups from same-action-type pairs.
    Arrays (N,) of the training pool's dives."""
    if mode not in ("dn", "nodn"):
        raise ValueError(f"CoRe: exemplar mode must be 'dn' or 'nodn', got {mode!r}")
    score = np.asarray(score, dtype=np.float64)
    use_dd = mode == "dn"
    values = score / np.asarray(difficulty, dtype=np.float64) if use_dd else score
    groups = np.asarray(action) if use_dd else None
    edges = group_edges(pair_differences(values, groups), depth)
    return {"use_dd": use_dd, "theta": 30.0 if use_dd else 100.0, "depth": depth, "edges": list(edges)}
