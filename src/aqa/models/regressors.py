"""Score regressors: the three-layer ReLU MLP used by TSA (per token) and the F+R family."""

from __future__ import annotations

import torch
from torch import nn


class ScoreMLP(nn.Module):
    """in -> 256 -> 64 -> out with ReLU between (the reference's MLP_score), on the last dim."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...] = (256, 64), out_dim: int = 1):
        super().__init__()
        dims = (in_dim, *hidden)
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (..., in) -> (..., out)


class TokenRegressor(nn.Module):
    """Relative score of a token sequence: ScoreMLP on every token, averaged over the tokens."""

    def __init__(self, dim: int = 64, hidden: tuple[int, ...] = (256, 64)):
        super().__init__()
        self.mlp = ScoreMLP(dim, hidden, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(tokens).squeeze(-1).mean(1)  # (B, N, C) -> (B,)
