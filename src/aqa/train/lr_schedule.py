"""The learning-rate schedule of params train.lr_schedule (docs/METHODS.md D5).

`constant` (the built-in default): every Adam group keeps its base lr, as before the option existed.
`warmup_cosine`: FineParser's code (timm's CosineLRScheduler as its builder sets it up, stepped
after every batch; FINEPARSER.md 4.2), written here from the formula. Batch t of the whole
training (t = epoch * n_iter + index in the epoch, from 0) runs at, for a group of base lr b,

    t < T_w:       lr_min + t * ((b - lr_min) / T_w)                 (T_w = warmup_epochs * n_iter)
    T_w <= t < T:  lr_min + 0.5 * (b - lr_min) * (1 + cos(pi * t / T))  (T = cosine_epochs * n_iter)
    t >= T:        lr_min                                            (our choice, see below)

so the first batch runs at lr_min (timm sets warmup_lr_init at construction; step_update(t + 1)
after batch t sets batch t + 1's), and the cosine counts t from 0, not from the end of the warm-up
(warmup_prefix False). A group whose base is lr_min stays there (FineParser's TAP I3D at 1e-4).
Past T the code's timm would restart the cosine (cycle_limit 15); the code never gets there (its
400 epochs end at T), and a restart is no schedule anyone chose, so the lr stays at lr_min.

The lr is a function of t alone, so a resumed training sees the same lr at every batch as an
uninterrupted one (the optimiser's saved lr is overwritten before each step).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from aqa.errors import AqaError

CONSTANT, WARMUP_COSINE = "constant", "warmup_cosine"
WARMUP_COSINE_KEYS = ("warmup_epochs", "cosine_epochs", "lr_min")


class ScheduleError(AqaError):
    """A train.lr_schedule that cannot schedule the optimiser's groups."""


def is_constant(cfg: Mapping[str, Any] | None) -> bool:
    """Whether `cfg` (params train.lr_schedule; None = absent) keeps every lr at its base."""
    return cfg is None or cfg.get("name") == CONSTANT


def schedule_problems(cfg: Mapping[str, Any], where: str = "train.lr_schedule") -> list[str]:
    """What is wrong with the keys of a schema-valid lr_schedule (one line each)."""
    name = cfg.get("name")
    extra = sorted(set(cfg) - {"name"})
    if name == CONSTANT:
        return [f"{where}: name constant takes no other keys, got {extra}"] if extra else []
    missing = [k for k in WARMUP_COSINE_KEYS if k not in cfg]
    if missing:
        return [f"{where}: name {WARMUP_COSINE} needs {', '.join(missing)}"]
    if not cfg["warmup_epochs"] < cfg["cosine_epochs"]:
        return [f"{where}: warmup_epochs ({cfg['warmup_epochs']}) must be below cosine_epochs "
                f"({cfg['cosine_epochs']}): the cosine counts from the first batch"]
    return []


def lr_at(base: float, t: int, n_iter: int, cfg: Mapping[str, Any]) -> float:
    """The lr of batch `t` (from 0 over all epochs, `n_iter` batches an epoch) for a group of base lr `base`."""
    if is_constant(cfg):
        return base
    low = cfg["lr_min"]
    warmup, total = cfg["warmup_epochs"] * n_iter, cfg["cosine_epochs"] * n_iter
    if t < warmup:
        return low + t * ((base - low) / warmup)
    if t >= total:
        return low
    return low + 0.5 * (base - low) * (1 + math.cos(math.pi * t / total))


class LrSchedule:
    """The schedule of one optimiser: its groups' base lrs (as make_optimizer set them) over `n_iter`
    batches an epoch."""

    def __init__(self, cfg: Mapping[str, Any], optimizer: torch.optim.Optimizer, n_iter: int):
        problems = schedule_problems(cfg)
        if problems:
            raise ScheduleError(problems[0])
        self.cfg, self.n_iter = dict(cfg), n_iter
        self.bases = [float(g["lr"]) for g in optimizer.param_groups]
        self.names = [g.get("name", str(i)) for i, g in enumerate(optimizer.param_groups)]
        low = cfg.get("lr_min", 0.0)
        for name, base in zip(self.names, self.bases):
            if not is_constant(cfg) and base < low:
                raise ScheduleError(f"train.lr_schedule.lr_min = {low} is above the base lr {base} of the optimiser "
                                    f"group {name!r}: the warm-up would lower it and the cosine raise it")

    def lrs(self, t: int) -> list[float]:
        return [lr_at(b, t, self.n_iter, self.cfg) for b in self.bases]

    def apply(self, optimizer: torch.optim.Optimizer, t: int) -> None:
        """Set every group's lr for batch `t`."""
        for group, lr in zip(optimizer.param_groups, self.lrs(t)):
            group["lr"] = lr

    def last_of_epoch(self, epoch: int) -> dict[str, float]:
        """Each group's lr at the epoch's last batch (logged per epoch)."""
        return dict(zip(self.names, self.lrs((epoch + 1) * self.n_iter - 1)))
