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


class PairwiseModel(nn.Module):
    """Shared loss: MSE on delta (and delta_rev) + BCE on the segmentation, weights 1, raw scores."""

    def __init__(self):
        super().__init__()
        self.backbone = CachedFeatures()

    @staticmethod
    def _check_mode(transitions: str) -> None:
        if transitions not in TRANSITION_MODES:
            raise ValueError(f"transitions must be one of {TRANSITION_MODES}, got {transitions!r}")

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

    def _video(self, batch: dict) -> torch.Tensor:
        pooled, _ = self.backbone(batch)
        feat = pooled.mean(1)  # (B, 1024): mean over snippets
        if self.cfg.use_action:
            action = batch["action"].to(feat.device).long()
            if int(action.max()) >= self.cfg.num_actions or int(action.min()) < 0:
                raise ValueError(f"action index out of range [0, {self.cfg.num_actions})")
            feat = torch.cat([feat, self.action_embed(action)], -1)  # (B, 1024 + A)
        return feat

    def forward(self, query: dict, exemplar: dict, transitions: str = "pred") -> dict[str, torch.Tensor]:
        self._check_mode(transitions)  # no segmentation: accepted and unused
        fq, fe = self._video(query), self._video(exemplar)
        out = {"delta": self.regressor(torch.cat([fq, fe], -1)).squeeze(-1)}  # (B,)
        if self.cfg.symmetric:
            out["delta_rev"] = self.regressor(torch.cat([fe, fq], -1)).squeeze(-1)
        return out


# --------------------------------------------------------------------------- segmentation


class _SegmentingModel(PairwiseModel):
    """PSNet over query and exemplar together (one BN batch of 2B, as the reference)."""

    def _segment(self, query: dict, exemplar: dict, transitions: str):
        self._check_mode(transitions)
        pq, mq = self.backbone(query)
        pe, me = self.backbone(exemplar)
        feats, seg = self.psnet(torch.cat([pq, pe]))  # (2B, 96, 64), (2B, 96, 2)
        pred = predicted_boundaries(seg)  # (2B, 2) first slot of steps 2 and 3
        if transitions == "gt":
            gt = torch.cat([query["transitions"], exemplar["transitions"]]).to(seg.device)
            bounds = gt.long() + 1  # loader value + 1, as the reference's training loop
        else:
            bounds = pred
        b = pq.shape[0]
        out = {"seg_query": seg[:b], "seg_exemplar": seg[b:],
               # back on the batch's scale (loader value = boundary - 1), comparable by aiou
               "pred_transitions": pred[:b] - 1, "pred_transitions_exemplar": pred[b:] - 1}
        return feats, bounds, (None if mq is None else torch.cat([mq, me])), out


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

    def forward(self, query: dict, exemplar: dict, transitions: str = "pred") -> dict[str, torch.Tensor]:
        feats, bounds, _, out = self._segment(query, exemplar, transitions)
        steps = resample_steps(feats, bounds, self.cfg.fix_size)  # (2B, 3*fix, 64)
        steps = steps.view(steps.shape[0], 3, self.cfg.fix_size, -1).mean(2)  # (2B, 3, 64)
        b = steps.shape[0] // 2
        sq, se = steps[:b], steps[b:]
        out["delta"] = self.regressor(torch.cat([sq, se], -1)).squeeze(-1).mean(1)  # (B,)
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

    def forward(self, query: dict, exemplar: dict, transitions: str = "pred") -> dict[str, torch.Tensor]:
        feats, bounds, maps, out = self._segment(query, exemplar, transitions)
        if maps is None:
            raise KeyError("TSA needs the spatial maps: batch['maps'] (B, 9, 1024, H, W)")
        fix, b2, dim = self.cfg.fix_size, feats.shape[0], feats.shape[-1]
        fmaps = encode_maps(self.psnet, maps, self.cfg.map_layout)  # (2B, 96, 64, H, W)
        h, w = fmaps.shape[-2:]
        tokens = resample_steps(feats, bounds, fix).view(b2 * 3, fix, dim)  # (2B*3, fix, 64)
        mem = resample_steps(fmaps, bounds, fix)  # (2B, 3*fix, 64, H, W)
        mem = mem.permute(0, 1, 3, 4, 2).reshape(b2, 3, fix * h * w, dim)  # (2B, 3, fix*H*W, 64)
        b = b2 // 2
        mem = torch.cat([mem[b:], mem[:b]]).reshape(b2 * 3, fix * h * w, dim)  # swap: q<-e, e<-q
        # each step's query tokens attend to the other video's tokens of the same step
        dec = self.decoder(tokens, mem).view(b2, 3 * fix, dim)  # (2B, 3*fix, 64)
        delta = self.regressor(dec)  # (2B,)
        out["delta"], out["delta_rev"] = delta[:b], delta[b:]
        return out
