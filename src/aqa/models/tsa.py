"""TSA and its Table 3 ablations as pairwise (query, exemplar) models (PAPERS.md section 3).

Every model predicts delta = score(query) - score(exemplar); the score of the query is
delta + the exemplar's score, voted over exemplars by the evaluation. Batches follow
docs/CONTRACTS.md: pooled (B, 9, 1024), maps (B, 9, 1024, H, W), score (B,), transitions (B, 2)
long on the reference loader's 96 scale, action (B,) long.

- F+R (`fr`): contrastive regression on video-level features (mean over the 9 snippets),
  symmetric loss; F+R* (`fr_asym`) the query-to-exemplar direction only; F+R# (`fr_dn`) with an
  embedding of the action type concatenated to each video's feature.
- F+S+R (`fsr`): F+R plus PSNet; step-wise pooled features regressed per step, no attention.
- TSA (`tsa`): PSNet, step resampling, procedure-aware cross-attention, token regression.

Each model is split into `encode(batch, transitions) -> dict` (per-dive tensors, first dim B) and
`compare(enc_q, enc_e) -> dict` (the pair), so voting can encode each dive once and compare it
with many exemplars. `forward(query, exemplar)` encodes the two batches as ONE batch of 2B, query
rows first, as the reference (what PSNet's training-mode BatchNorm normalises together is
train.batchnorm: aqa.models.batchnorm) and compares.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from aqa.models.backbone import CachedFeatures
from aqa.models.decoder import Decoder, DecoderConfig
from aqa.models.psnet import (
    PSNet, PSNetConfig, encode_maps, predicted_boundaries, resample_steps, segmentation_loss,
)
from aqa.models.regressors import ScoreMLP, TokenRegressor


TRANSITION_MODES = ("pred", "gt")

Encoding = dict[str, torch.Tensor]


def cat_batches(query: dict, exemplar: dict) -> dict:
    """One batch: the query rows, then the exemplar rows (keys both batches have)."""
    return {k: torch.cat([query[k], exemplar[k]]) for k in query if k in exemplar}


def split_encoding(enc: Encoding, b: int) -> tuple[Encoding, Encoding]:
    """(first b rows, the rest) of every tensor of an encoding."""
    return {k: v[:b] for k, v in enc.items()}, {k: v[b:] for k, v in enc.items()}


class PairwiseModel(nn.Module):
    """encode / compare / forward, and the shared loss: MSE on delta (and delta_rev) + BCE on the
    segmentation, weights 1, raw scores.

    Subclasses implement `encode_modes(batch, modes) -> {mode: encoding}` (the work that does not
    depend on the transitions is done once for all modes) and `compare(enc_q, enc_e, reverse=True)`.
    """

    pairwise = True  # scored by voting over exemplars (direct models: aqa.models.direct)

    def __init__(self):
        super().__init__()
        self.backbone = CachedFeatures()

    @staticmethod
    def _check_modes(modes: tuple[str, ...]) -> None:
        for m in modes:
            if m not in TRANSITION_MODES:
                raise ValueError(f"transitions must be one of {TRANSITION_MODES}, got {m!r}")

    def encode(self, batch: dict, transitions: str = "pred") -> Encoding:
        """Per-dive tensors of a batch (first dim B), cut at `transitions` where the method cuts steps."""
        return self.encode_modes(batch, (transitions,))[transitions]

    def encode_modes(self, batch: dict, modes: tuple[str, ...]) -> dict[str, Encoding]:
        raise NotImplementedError

    def compare(self, enc_q: Encoding, enc_e: Encoding, *, reverse: bool = True) -> dict[str, torch.Tensor]:
        """The pair's outputs (docs/CONTRACTS.md); reverse=False skips delta_rev (voting needs delta only)."""
        raise NotImplementedError

    def forward(self, query: dict, exemplar: dict, transitions: str = "pred") -> dict[str, torch.Tensor]:
        # (the number of queries from a key every batch has: the frames path carries no "pooled")
        enc_q, enc_e = split_encoding(self.encode(cat_batches(query, exemplar), transitions),
                                      query["score"].shape[0])
        return self.compare(enc_q, enc_e)

    def loss(self, out: dict[str, torch.Tensor], query: dict, exemplar: dict
             ) -> tuple[torch.Tensor, dict[str, float]]:
        yq = query["score"].to(out["delta"].device).float()  # (B,)
        ye = exemplar["score"].to(out["delta"].device).float()
        terms = {"mse": F.mse_loss(out["delta"].float(), yq - ye)}
        if "delta_rev" in out:
            terms["mse_rev"] = F.mse_loss(out["delta_rev"].float(), ye - yq)
        if "seg_query" in out:
            seg = torch.cat([out["seg_query"], out["seg_exemplar"]])  # (2B, T, 2)
            gt = torch.cat([query["transitions"], exemplar["transitions"]]).to(seg.device) + 1
            terms["bce_seg"] = segmentation_loss(seg, gt)
        total = sum(terms.values())
        return total, {k: float(v.detach()) for k, v in terms.items()}


# --------------------------------------------------------------------------- F+R family


@dataclass
class FRConfig:
    feature_dim: int = 1024
    hidden: tuple[int, ...] = (256, 64)
    symmetric: bool = True              # False: F+R* (query-to-exemplar direction only)
    use_action: bool = False            # True: F+R# (action-type embedding concatenated)
    num_actions: int | None = None      # required with use_action
    action_dim: int = 64


class FRModel(PairwiseModel):
    def __init__(self, cfg: FRConfig = FRConfig()):
        super().__init__()
        self.cfg = cfg
        in_dim = cfg.feature_dim
        if cfg.use_action:
            if not cfg.num_actions:
                raise ValueError("F+R# (use_action) needs num_actions, the number of action types")
            self.action_embed = nn.Embedding(cfg.num_actions, cfg.action_dim)
            in_dim += cfg.action_dim
        self.regressor = ScoreMLP(2 * in_dim, cfg.hidden, 1)

    def encode_modes(self, batch: dict, modes: tuple[str, ...]) -> dict[str, Encoding]:
        self._check_modes(modes)  # no segmentation: accepted and unused
        pooled, _ = self.backbone(batch)
        feat = pooled.mean(1)  # (B, 1024): mean over snippets
        if self.cfg.use_action:
            action = batch["action"].to(feat.device).long()
            if int(action.max()) >= self.cfg.num_actions or int(action.min()) < 0:
                raise ValueError(f"action index out of range [0, {self.cfg.num_actions})")
            feat = torch.cat([feat, self.action_embed(action)], -1)  # (B, 1024 + A)
        return {m: {"video": feat} for m in modes}

    def compare(self, enc_q: Encoding, enc_e: Encoding, *, reverse: bool = True) -> dict[str, torch.Tensor]:
        fq, fe = enc_q["video"], enc_e["video"]
        out = {"delta": self.regressor(torch.cat([fq, fe], -1)).squeeze(-1)}  # (B,)
        if self.cfg.symmetric and reverse:
            out["delta_rev"] = self.regressor(torch.cat([fe, fq], -1)).squeeze(-1)
        return out


# --------------------------------------------------------------------------- segmentation


class _SegmentingModel(PairwiseModel):
    """PSNet over the batch (in forward: query rows then exemplar rows, one batch of 2B, as the reference)."""

    def _segment(self, batch: dict, modes: tuple[str, ...]):
        """(pooled, maps, slot features, {"seg", "pred_transitions"}, {mode: boundaries (B, 2)})."""
        self._check_modes(modes)
        pooled, maps = self.backbone(batch)
        feats, seg = self.psnet(pooled)  # (B, 96, 64), (B, 96, 2)
        pred = predicted_boundaries(seg)  # (B, 2) first slot of steps 2 and 3
        # the loader's value + 1, as the reference's training loop
        bounds = {m: batch["transitions"].to(seg.device).long() + 1 if m == "gt" else pred for m in modes}
        # pred_transitions back on the batch's scale (loader value = boundary - 1), comparable by aiou
        return pooled, maps, feats, {"seg": seg, "pred_transitions": pred - 1}, bounds

    @staticmethod
    def _segment_outputs(enc_q: Encoding, enc_e: Encoding) -> dict[str, torch.Tensor]:
        return {"seg_query": enc_q["seg"], "seg_exemplar": enc_e["seg"],
                "pred_transitions": enc_q["pred_transitions"],
                "pred_transitions_exemplar": enc_e["pred_transitions"]}


@dataclass
class FSRConfig:
    psnet: PSNetConfig = field(default_factory=PSNetConfig)
    fix_size: int = 5
    hidden: tuple[int, ...] = (256, 64)


class FSRModel(_SegmentingModel):
    """F+S+R: each step's resampled slots averaged, [step_q, step_e] regressed, steps averaged."""

    def __init__(self, cfg: FSRConfig = FSRConfig()):
        super().__init__()
        self.cfg = cfg
        self.psnet = PSNet(cfg.psnet)
        self.regressor = ScoreMLP(2 * cfg.psnet.out_dim, cfg.hidden, 1)

    def encode_modes(self, batch: dict, modes: tuple[str, ...]) -> dict[str, Encoding]:
        _, _, feats, seg, bounds = self._segment(batch, modes)
        fix = self.cfg.fix_size
        out = {}
        for m in modes:
            steps = resample_steps(feats, bounds[m], fix)  # (B, 3*fix, 64)
            out[m] = {"steps": steps.view(steps.shape[0], 3, fix, -1).mean(2), **seg}  # (B, 3, 64)
        return out

    def compare(self, enc_q: Encoding, enc_e: Encoding, *, reverse: bool = True) -> dict[str, torch.Tensor]:
        sq, se = enc_q["steps"], enc_e["steps"]
        out = self._segment_outputs(enc_q, enc_e)
        out["delta"] = self.regressor(torch.cat([sq, se], -1)).squeeze(-1).mean(1)  # (B,)
        if reverse:
            out["delta_rev"] = self.regressor(torch.cat([se, sq], -1)).squeeze(-1).mean(1)
        return out


@dataclass
class TSAConfig:
    psnet: PSNetConfig = field(default_factory=PSNetConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    fix_size: int = 5
    regressor_hidden: tuple[int, ...] = (256, 64)
    map_layout: str = "reference"  # "reference" (the authors' raw reshapes) | "spatial"


class TSAModel(_SegmentingModel):
    def __init__(self, cfg: TSAConfig = TSAConfig()):
        super().__init__()
        if cfg.decoder.dim != cfg.psnet.out_dim:
            raise ValueError(f"decoder dim {cfg.decoder.dim} must equal PSNet's output dim {cfg.psnet.out_dim}")
        if cfg.map_layout not in ("reference", "spatial"):
            raise ValueError(f"unknown map_layout {cfg.map_layout!r}")
        self.cfg = cfg
        self.psnet = PSNet(cfg.psnet)
        self.decoder = Decoder(cfg.decoder)
        self.regressor = TokenRegressor(cfg.decoder.dim, cfg.regressor_hidden)

    def encode_modes(self, batch: dict, modes: tuple[str, ...]) -> dict[str, Encoding]:
        """tokens (B, 3, fix, 64): the steps' resampled slots; memory (B, 3, fix*H*W, 64): the
        steps' resampled map tokens (time-major, then row, column); seg; pred_transitions."""
        _, maps, feats, seg, bounds = self._segment(batch, modes)
        if maps is None:
            raise KeyError("TSA needs the spatial maps: batch['maps'] (B, 9, 1024, H, W)")
        fix, n, dim = self.cfg.fix_size, feats.shape[0], feats.shape[-1]
        fmaps = encode_maps(self.psnet, maps, self.cfg.map_layout)  # (B, 96, 64, H, W)
        h, w = fmaps.shape[-2:]
        out = {}
        for m in modes:
            tokens = resample_steps(feats, bounds[m], fix).view(n, 3, fix, dim)
            mem = resample_steps(fmaps, bounds[m], fix)  # (B, 3*fix, 64, H, W)
            mem = mem.permute(0, 1, 3, 4, 2).reshape(n, 3, fix * h * w, dim)
            out[m] = {"tokens": tokens, "memory": mem, **seg}
        return out

    def compare(self, enc_q: Encoding, enc_e: Encoding, *, reverse: bool = True) -> dict[str, torch.Tensor]:
        tq, te = enc_q["tokens"], enc_e["tokens"]  # (B, 3, fix, 64)
        b, _, fix, dim = tq.shape
        # each step's tokens attend to the other video's memory of the same step; both directions
        # (and the 3 steps) folded into one decoder batch
        tokens = torch.cat([tq, te]) if reverse else tq  # (2B or B, 3, fix, 64)
        mem = torch.cat([enc_e["memory"], enc_q["memory"]]) if reverse else enc_e["memory"]
        n = tokens.shape[0]
        dec = self.decoder(tokens.reshape(n * 3, fix, dim), mem.reshape(n * 3, mem.shape[2], dim))
        delta = self.regressor(dec.view(n, 3 * fix, dim))  # (n,)
        out = self._segment_outputs(enc_q, enc_e)
        out["delta"] = delta[:b]
        if reverse:
            out["delta_rev"] = delta[b:]
        return out
