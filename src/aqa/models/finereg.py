"""FineParser's projections and fine-grained regression (../shared/docs/FINEPARSER.md 2.6-2.8).

- `SVEProjection` (f_l, mask.py:79-92): per step, the resampled frames are CHANNELS and the
  backbone's 512 dimensions the LENGTH: double_conv(C_l -> 48), then three down blocks
  (max-pool /2 + double_conv) 48 -> 24 -> 12 -> d, so (C_l, 512) -> (d, 64). d is the "step
  duration" of Table 4 (2 / 4 / 8; the code's 4). One stack per step.
- `CChannel` (mask.py:124-139): the I3D stream's projection, (n, 1024) -> (12, 64): double_conv
  (n -> 8), double_conv (8 -> 12) with no pooling, Linear 1024 -> 512 -> 256 -> 64 each with ReLU.
  One per step.
- `FineReg`: per step, the query's tokens attend to the exemplar's tokens of the same step (and
  the reverse direction) in each stream; ScoreMLP per token; the token mean per step; the step
  weights; the two streams combined.

Switches (decision D2, code by default): `decoder_sharing` reference (steps 1 and 2 share a
decoder per stream: 4 decoders) | per_step (6); `lambda_norm` True (weights 3/10, 5/10, 2/10)
| False (the paper's 3, 5, 2); `stream_mean` True (the code averages the two streams) | False
(the paper's sum).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from aqa.models.decoder import Decoder, DecoderConfig
from aqa.models.psnet import _double_conv
from aqa.models.regressors import ScoreMLP

DECODER_SHARING = ("reference", "per_step")
STREAMS = ("i3d", "sve")


class SVEProjection(nn.Module):
    """(B, C_l, 512) -> (B, d, 512 / 8): frames as channels, one stack for one step."""

    def __init__(self, in_channels: int, tokens: int = 4, widths: tuple[int, ...] = (48, 24, 12)):
        super().__init__()
        layers = [_double_conv(in_channels, widths[0])]
        for cin, cout in zip(widths, (*widths[1:], tokens)):
            layers.append(nn.Sequential(nn.MaxPool1d(2), _double_conv(cin, cout)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, d, L / 8), ReLU-ended


class CChannel(nn.Module):
    """(B, n, 1024) -> (B, 12, 64), non-negative: the I3D stream's projection of one step."""

    def __init__(self, in_channels: int = 4, feature_dim: int = 1024, hidden=(512, 256), out_dim: int = 64):
        super().__init__()
        self.convs = nn.Sequential(_double_conv(in_channels, 8), _double_conv(8, 12))
        dims = (feature_dim, *hidden, out_dim)
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.convs(x))  # (B, 12, 64)


@dataclass
class FineRegConfig:
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    regressor_hidden: tuple[int, ...] = (256, 64)
    step_weights: tuple[float, ...] = (3.0, 5.0, 2.0)
    lambda_norm: bool = True        # code: weights / their sum; paper: as they are
    stream_mean: bool = True        # code: mean of the two streams; paper: their sum
    decoder_sharing: str = "reference"


class FineReg(nn.Module):
    """forward({stream: (q (B, 3, n, C), e (B, 3, n, C))}, reverse) -> delta (B or 2B,): rows
    [:B] q -> e, rows [B:] e -> q (with reverse)."""

    def __init__(self, cfg: FineRegConfig, streams: tuple[str, ...] = STREAMS):
        super().__init__()
        if cfg.decoder_sharing not in DECODER_SHARING:
            raise ValueError(f"decoder_sharing must be one of {DECODER_SHARING}, got {cfg.decoder_sharing!r}")
        if not streams or set(streams) - set(STREAMS):
            raise ValueError(f"FineReg streams must be a non-empty subset of {STREAMS}, got {streams}")
        if len(cfg.step_weights) != 3:
            raise ValueError(f"step_weights needs one weight per step (3), got {cfg.step_weights}")
        self.cfg = cfg
        self.streams = tuple(s for s in STREAMS if s in streams)
        n_dec = 2 if cfg.decoder_sharing == "reference" else 3  # per stream
        self.decoders = nn.ModuleDict({s: nn.ModuleList(Decoder(cfg.decoder) for _ in range(n_dec))
                                       for s in self.streams})
        # R_V (the I3D stream) and R_S (the SVE stream); the code's third regressor is never used
        self.regressors = nn.ModuleDict({s: ScoreMLP(cfg.decoder.dim, cfg.regressor_hidden, 1)
                                         for s in self.streams})

    def decoder_for(self, stream: str, step: int) -> Decoder:
        """reference: steps 1 and 2 share decoder 0, step 3 has decoder 1; per_step: one each."""
        decs = self.decoders[stream]
        return decs[int(step == 2)] if self.cfg.decoder_sharing == "reference" else decs[step]

    def step_deltas(self, stream: str, q: torch.Tensor, e: torch.Tensor, reverse: bool) -> torch.Tensor:
        """(B, 3, n, C) each -> the per-step relative scores (B or 2B, 3): token means of R."""
        out = []
        for step in range(3):
            dec = self.decoder_for(stream, step)
            qs, es = q[:, step], e[:, step]                        # (B, n, C)
            tok = dec(qs, es) if not reverse else torch.cat([dec(qs, es), dec(es, qs)])  # (B|2B, n, C)
            out.append(self.regressors[stream](tok).squeeze(-1).mean(1))  # (B|2B,)
        return torch.stack(out, 1)

    def combine(self, per_stream: dict[str, torch.Tensor]) -> torch.Tensor:
        """{stream: (N, 3)} -> (N,): the step weights (normalised or not), then the streams'
        mean or sum."""
        w = torch.tensor(self.cfg.step_weights, dtype=torch.float32)
        if self.cfg.lambda_norm:
            w = w / w.sum()
        d = torch.stack([(per_stream[s].float() * w.to(per_stream[s].device)).sum(1) for s in self.streams], 1)
        return d.mean(1) if self.cfg.stream_mean else d.sum(1)

    def forward(self, tokens: dict[str, tuple[torch.Tensor, torch.Tensor]], reverse: bool = True) -> torch.Tensor:
        return self.combine({s: self.step_deltas(s, *tokens[s], reverse) for s in self.streams})
