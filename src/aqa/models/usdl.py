"""USDL and MUSDL (Tang et al., CVPR 2020): score distributions learnt with a KL loss.

Read from the authors' code (nzl-thu/MUSDL, MTL-AQA/{main,dataset,opts,config}.py,
models/evaluator.py) and ../shared/docs/BASELINES.md sections 4, 5 and 10; every decision is
named in docs/METHODS.md ("USDL", "MUSDL").

- USDL: clip-mean feature -> MLP 1024-256-128-K -> softmax over K = 101 score bins. Target: a
  Gaussian over the bins centred at the score in bin units (sigma in bins), truncated to the
  bins and renormalised. Loss: element-mean KL (the sources' `nn.KLDivLoss()`, divided by B * K).
  Prediction: the arg-max bin times score_max / (K - 1) (the code; "expectation" is an option).
  With use_dd (the w/ DN reading, D2 R2) the target is the execution part y / DD on [0, 30] and
  the prediction is multiplied by the dive's DD.
- MUSDL: one such head per judge (21 bins = judge scores 0, 0.5, ..., 10), the per-judge KL
  terms summed; the predicted judge scores assembled by the panel's rule and the dive's DD.
  FineDiving panels have 3, 5 or 7 judges (D3) and a few impossible judge values (D4): see
  `judge_masks` and `assemble_panel`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aqa.models.direct import DirectModel, batch_field, difficulty_of, fp32
from aqa.models.regressors import ScoreMLP

PREDICTIONS = ("argmax", "expectation")


# --------------------------------------------------------------------------- distributions


def gaussian_targets(values: torch.Tensor, num_bins: int, value_max: float, sigma: float) -> torch.Tensor:
    """Soft labels (..., K) float32: N(k; value * (K - 1) / value_max, sigma) over the bins
    k = 0..K-1 (sigma in bins), truncated to the bins and renormalised to sum 1.

    Computed as a softmax of the log-density in float64 (the same numbers as the source's pdf /
    sum, without the all-zero row the pdf would give far outside the bins), then float32 and
    renormalised in float32 as the source.
    """
    centre = values.detach().double() * (num_bins - 1) / value_max               # (...)
    bins = torch.arange(num_bins, dtype=torch.float64, device=values.device)      # (K,)
    logits = -((bins - centre.unsqueeze(-1)) ** 2) / (2.0 * sigma ** 2)          # (..., K)
    t = torch.softmax(logits, -1).float()
    return t / t.sum(-1, keepdim=True)


def decode(log_probs: torch.Tensor, value_max: float, prediction: str = "argmax") -> torch.Tensor:
    """The value a distribution (..., K) predicts: its arg-max bin (the sources) or its mean
    (`expectation`), in value units (bin * value_max / (K - 1))."""
    step = value_max / (log_probs.shape[-1] - 1)
    if prediction == "argmax":
        return log_probs.argmax(-1).float() * step
    if prediction == "expectation":
        bins = torch.arange(log_probs.shape[-1], device=log_probs.device, dtype=torch.float32)
        return (log_probs.float().exp() * bins).sum(-1) * step
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def kl_cells(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """KL(t || p) of each distribution (...,), summed over its K bins; 0 * log 0 = 0."""
    return F.kl_div(log_probs.float(), targets, reduction="none").sum(-1)


def _check_prediction(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


# --------------------------------------------------------------------------- USDL


@dataclass
class USDLConfig:
    feature_dim: int = 1024
    hidden: tuple[int, ...] = (256, 128)
    num_bins: int = 101
    sigma: float = 5.0                  # in bins (the source's --std)
    score_max: float | None = None      # None: 104.5 (MTL-AQA label_max, D5), 30 with use_dd
    use_dd: bool = False                # True: USDL-DD, target y / DD, prediction x DD (D2 R2)
    prediction: str = "argmax"          # "argmax" (the code) | "expectation" (D9)

    @property
    def value_max(self) -> float:
        if self.score_max is not None:
            return float(self.score_max)
        return 30.0 if self.use_dd else 104.5


class USDLModel(DirectModel):
    """out: log_probs (B, K), value (B,) the decoded bin value (score or y / DD), score (B,)."""

    def __init__(self, cfg: USDLConfig = USDLConfig()):
        super().__init__()
        _check_prediction(cfg.prediction)
        self.cfg = cfg
        self.mlp = ScoreMLP(cfg.feature_dim, cfg.hidden, cfg.num_bins)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        log_probs = F.log_softmax(self.mlp(self.features(batch)), -1)  # (B, K)
        value = decode(log_probs, self.cfg.value_max, self.cfg.prediction)  # (B,)
        score = value * difficulty_of(batch, "usdl", value.device) if self.cfg.use_dd else value
        return {"log_probs": log_probs, "value": value, "score": score}

    def targets(self, batch: dict, device: torch.device) -> torch.Tensor:
        """The soft labels (B, K) of the batch's scores (or y / DD)."""
        value = batch["score"].to(device).float()
        if self.cfg.use_dd:
            value = value / difficulty_of(batch, "usdl", device)
        return gaussian_targets(value, self.cfg.num_bins, self.cfg.value_max, self.cfg.sigma)

    def loss(self, out: dict[str, torch.Tensor], batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        log_probs = out["log_probs"]
        with fp32(log_probs.device):
            # the source's nn.KLDivLoss(): mean over the B * K elements
            kl = kl_cells(log_probs, self.targets(batch, log_probs.device)).sum() / log_probs.numel()
        return kl, {"kl": float(kl.detach())}


# --------------------------------------------------------------------------- MUSDL

# The panel rules that reproduce FineDiving's dive_score (BASELINES.md section 5) and MTL-AQA's:
# 7 judges: DD x the sum of the middle three; 5: DD x 0.6 x the sum; 3: DD x the sum.
PANEL_RULES = {7: "DD x sum of the sorted middle three", 5: "DD x 0.6 x sum of five", 3: "DD x sum of three"}


def assemble_panel(judge_scores: torch.Tensor, num_judges: torch.Tensor, difficulty: torch.Tensor) -> torch.Tensor:
    """The dive scores (B,) of the predicted judge scores (B, J) of panels of `num_judges` (B,):
    entries j >= n are ignored; the rule of PANEL_RULES for n, times the difficulty (B,)."""
    n = num_judges.to(judge_scores.device).long()
    bad = sorted(set(n.tolist()) - set(PANEL_RULES))
    if bad:
        raise ValueError(f"MUSDL: no panel rule for {bad} judges; known: {sorted(PANEL_RULES)}")
    present = torch.arange(judge_scores.shape[1], device=n.device) < n.unsqueeze(1)  # (B, J)
    total = (judge_scores * present).sum(1)                                          # (B,)
    raw = torch.where(n == 5, 0.6 * total, total)
    if bool((n == 7).any()):
        if judge_scores.shape[1] < 7:
            raise ValueError(f"MUSDL: 7-judge panels need 7 heads, the model has {judge_scores.shape[1]}")
        middle = judge_scores[:, :7].sort(1).values[:, 2:5].sum(1)  # (B,) drop 2 highest, 2 lowest
        raw = torch.where(n == 7, middle, raw)
    return raw * difficulty.to(raw.device).float()


def judge_masks(judges: torch.Tensor, num_judges: torch.Tensor, num_heads: int, judge_max: float = 10.0
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(judges (B, num_heads) float with NaN where absent, trained (B, num_heads) bool).

    Judge j of a dive is trained when j < n (the panel's own judges, in stored order) and its
    value lies in [0, judge_max]; the impossible values (FineDiving's 55.5 and 45.0) are left
    out (D4); an off-grid value inside the range (8.9) is kept."""
    n = num_judges.to(judges.device).long()
    if bool((n > num_heads).any()) or bool((n < 1).any()):
        raise ValueError(f"MUSDL: panels of {sorted(set(n.tolist()))} judges, the model has {num_heads} heads")
    judges = judges.float()
    if judges.shape[1] < num_heads:  # narrower input (e.g. a 3-judge dataset): NaN-pad
        judges = F.pad(judges, (0, num_heads - judges.shape[1]), value=float("nan"))
    judges = judges[:, :num_heads]
    present = torch.arange(num_heads, device=judges.device) < n.unsqueeze(1)
    in_range = torch.isfinite(judges) & (judges >= 0) & (judges <= judge_max)
    return judges, present & in_range


def out_of_range_judges(judges: torch.Tensor, num_judges: torch.Tensor, judge_max: float = 10.0) -> torch.Tensor:
    """(B, J) bool: the panel's own judge entries MUSDL leaves out of training (for the host to log)."""
    present = torch.arange(judges.shape[1], device=judges.device) < num_judges.to(judges.device).long().unsqueeze(1)
    judges = judges.float()
    ok = torch.isfinite(judges) & (judges >= 0) & (judges <= judge_max)
    return present & ~ok


@dataclass
class MUSDLConfig:
    feature_dim: int = 1024
    hidden: tuple[int, ...] = (256, 128)
    num_heads: int = 7                  # one per judge seat; panels of 3 and 5 use the first n (D3 a)
    judge_bins: int = 21                # scores 0, 0.5, ..., 10
    judge_max: float = 10.0
    sigma: float = 5.0                  # in bins (2.5 judge points)
    prediction: str = "argmax"          # per-judge decoding (D9)


class MUSDLModel(DirectModel):
    """out: judge_log_probs (B, J, 21), judge_scores (B, J), score (B,) by the panel's rule x DD."""

    def __init__(self, cfg: MUSDLConfig = MUSDLConfig()):
        super().__init__()
        _check_prediction(cfg.prediction)
        if cfg.num_heads < max(PANEL_RULES):
            raise ValueError(f"MUSDL needs at least {max(PANEL_RULES)} heads, got num_heads={cfg.num_heads}")
        self.cfg = cfg
        self.heads = nn.ModuleList(ScoreMLP(cfg.feature_dim, cfg.hidden, cfg.judge_bins)
                                   for _ in range(cfg.num_heads))

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        feat = self.features(batch)                                                        # (B, 1024)
        log_probs = F.log_softmax(torch.stack([h(feat) for h in self.heads], 1), -1)       # (B, J, 21)
        judge_scores = decode(log_probs, self.cfg.judge_max, self.cfg.prediction)          # (B, J)
        num = batch_field(batch, "num_judges", "musdl", "(B,) long: the panel size 3, 5 or 7")
        score = assemble_panel(judge_scores, num, difficulty_of(batch, "musdl", feat.device))
        return {"judge_log_probs": log_probs, "judge_scores": judge_scores, "score": score}

    def loss(self, out: dict[str, torch.Tensor], batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        log_probs = out["judge_log_probs"]
        b, heads, bins = log_probs.shape
        judges = batch_field(batch, "judges", "musdl", "(B, 7) float: the judge scores, NaN-padded")
        num = batch_field(batch, "num_judges", "musdl", "(B,) long: the panel size 3, 5 or 7")
        judges, trained = judge_masks(judges.to(log_probs.device), num, heads, self.cfg.judge_max)
        with fp32(log_probs.device):
            targets = gaussian_targets(torch.where(trained, judges, torch.zeros_like(judges)),
                                       bins, self.cfg.judge_max, self.cfg.sigma)   # (B, J, 21)
            kl = kl_cells(log_probs, targets)                                      # (B, J)
            # the source's sum over judges of the element-mean KL (each / (B * 21)); a judge
            # entry that is absent or impossible contributes 0, so every trained entry weighs
            # the same whatever the batch's panels
            total = (kl * trained).sum() / (b * bins)
        return total, {"kl": float(total.detach())}
