"""Which rows a training-mode BatchNorm takes its statistics over: `train.batchnorm`.

A pairwise model's `forward(query, exemplar)` runs PSNet on ONE batch: the B query rows, then
the B exemplar rows (and its maps call: the query's B*H*W rows, then the exemplar's). What a
BatchNorm layer normalises that batch with is a training choice, not part of the model:

- `joint`: the statistics of all the rows the process holds (PyTorch's BatchNorm as it is). One
  process: the 2B rows of a step together. Under DDP: each process its own 2B/N rows.
- `split`: the query half and the exemplar half each over its own rows, as the reference ran:
  `nn.DataParallel` on 2 GPUs cuts the 2B rows into two chunks, the query half and the exemplar
  half, and each replica normalises its chunk. The running statistics are those of the query
  half: DataParallel keeps the in-place buffer updates of the replica on device 0 only. Under
  DDP each half is taken over all processes' rows of that half (synchronised), so any number of
  processes gives the reference's normalisation of the global batch.
- `sync`: all 2B rows of the global batch together, synchronised over the processes under DDP
  (what `nn.SyncBatchNorm` does); one process: the same as `joint`.

In eval mode every mode uses the running statistics. The layers keep their class's state-dict
keys, so a checkpoint loads into a model built with any mode. torch's SyncBatchNorm takes only
GPU inputs, so the synchronised statistics are computed here (an all-reduce of per-channel
sums, differentiable through torch.distributed.nn), the same code on gloo (CPU) and NCCL.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BATCHNORM_MODES = ("joint", "split", "sync")


class PairBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics are taken per half of the batch (`halves`) and/or
    over every process of the default group (`synced`); in eval mode, BatchNorm1d."""

    halves: bool = False
    synced: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not (self.halves or self.synced):
            return super().forward(x)
        if self.halves and x.shape[0] % 2:
            raise ValueError(f"split BatchNorm: a batch of {x.shape[0]} rows is not query rows followed by "
                             "as many exemplar rows")
        factor = self._update_factor()
        groups = list(x.chunk(2)) if self.halves else [x]
        normalise = self._synced if self.synced else self._local
        out = normalise(groups, factor)
        return out[0] if len(out) == 1 else torch.cat(out)

    def _update_factor(self) -> float:
        """The running statistics' update weight, as BatchNorm's forward computes it (0: no update)."""
        if not self.track_running_stats:
            return 0.0
        self.num_batches_tracked.add_(1)
        return 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum

    def _local(self, groups: list[torch.Tensor], factor: float) -> list[torch.Tensor]:
        """PyTorch's batch_norm on each group; the first group alone updates the running statistics."""
        return [F.batch_norm(g, self.running_mean if i == 0 else None, self.running_var if i == 0 else None,
                             self.weight, self.bias, True, factor, self.eps) for i, g in enumerate(groups)]

    def _synced(self, groups: list[torch.Tensor], factor: float) -> list[torch.Tensor]:
        """Each group's statistics over every process's rows of that group (two all-reduces for
        all groups: the sums give the means, then the squared deviations the variances)."""
        # here, not at the top: only a torchrun job with synced BatchNorm reaches this line, and the
        # import (~0.02 s, a temporary folder for its RPC templates) need not start every process
        import torch.distributed.nn.functional as dist_fn

        dims = [0, *range(2, groups[0].dim())]                    # all but the channel dim
        xs = [g.float() for g in groups]                          # statistics in fp32
        counts = torch.tensor([[g.numel() / g.shape[1]] for g in xs], device=xs[0].device)  # (G, 1)
        total = dist_fn.all_reduce(torch.cat([torch.stack([g.sum(dims) for g in xs]), counts], 1))  # (G, C+1)
        count = total[:, -1:]                                     # (G, 1) values per channel, all processes
        mean = total[:, :-1] / count                              # (G, C)
        shape = [1, -1] + [1] * (xs[0].dim() - 2)                 # a (C,) vector against (n, C[, L])
        centred = [g - m.view(shape) for g, m in zip(xs, mean)]
        var = dist_fn.all_reduce(torch.stack([(d * d).sum(dims) for d in centred])) / count  # (G, C) biased
        if factor and self.running_mean is not None:
            with torch.no_grad():   # the first group's, the variance unbiased (as BatchNorm)
                self.running_mean.mul_(1 - factor).add_(mean[0], alpha=factor)
                self.running_var.mul_(1 - factor).add_(var[0] * count[0] / (count[0] - 1).clamp(min=1),
                                                       alpha=factor)
        out = []
        for g, d, v in zip(groups, centred, var):
            y = d * torch.rsqrt(v + self.eps).view(shape)
            if self.weight is not None:
                y = y * self.weight.view(shape) + self.bias.view(shape)
            out.append(y.to(g.dtype))
        return out


def set_batchnorm_mode(model: nn.Module, mode: str, *, distributed: bool) -> int:
    """Make every BatchNorm1d of `model` normalise as `mode` says (the module docstring); return
    how many layers were changed.

    `distributed`: the training runs in several processes (torchrun). The layers change class in
    place (same parameters, buffers and keys); nothing changes where the mode is PyTorch's own
    BatchNorm: `joint` anywhere, `sync` in one process.
    """
    if mode not in BATCHNORM_MODES:
        raise ValueError(f"batchnorm mode {mode!r}: expected one of {BATCHNORM_MODES}")
    halves = mode == "split"
    synced = distributed and mode in ("split", "sync")
    if not (halves or synced):
        return 0
    changed = 0
    for module in model.modules():
        if type(module) in (nn.BatchNorm1d, PairBatchNorm1d):   # I3D's BatchNorm3d stays frozen as it is
            module.__class__ = PairBatchNorm1d
            module.halves, module.synced = halves, synced
            changed += 1
    return changed
