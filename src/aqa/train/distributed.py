"""Data-parallel training in several processes (torchrun): which process this is, and its share.

`torchrun --nproc_per_node N --no-python aqa train ...` starts N copies of the command; each
reads RANK, WORLD_SIZE and LOCAL_RANK from its environment (torchrun sets them, with the
rendezvous address). Without them (the pipeline, a hand run) training is one process and
nothing here changes what it computes (`SINGLE`).

Every process draws the epoch exactly as one process does (order, exemplars, views: from
(seed, epoch)), cuts it into the same global batches of `batch_size` pairs, and takes its own
contiguous share of each: N processes with batch_size / N pairs each see the global batch of one
process. DistributedDataParallel averages the gradients; each process's loss is weighted by its
share of the batch, so the average is the loss of the global batch even when the shares differ.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from aqa.errors import AqaError

log = logging.getLogger(__name__)

# Process 0 evaluates after each epoch while the others wait at their next collective; the
# default timeouts (10 min on NCCL) could end a fine-tuned run whose evaluation decodes and
# encodes every dive. torchrun ends all processes when one dies, so a long wait is safe.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)


class DistributedError(AqaError):
    """Several processes cannot train as configured."""


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Process 0 alone writes checkpoints, history, run.json and MLflow, and evaluates."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def min_batch(self) -> int:
        """Pairs a batch needs: two (BatchNorm), and one per process (each process must take part
        in every step); a smaller trailing batch joins the previous one."""
        return max(2, self.world_size)

    def check_batch_size(self, batch_size: int, what: str) -> None:
        if batch_size % self.world_size:
            raise DistributedError(f"{what}: batch_size {batch_size} is not a multiple of the {self.world_size} "
                                   "training processes (each process takes batch_size / processes pairs)")

    def shard(self, rows: np.ndarray) -> np.ndarray:
        """This process's contiguous share of one global batch (shares differ by at most one)."""
        return rows if not self.distributed else np.array_split(rows, self.world_size)[self.rank]

    def loss_weight(self, local: int, total: int) -> float:
        """Weight of this process's mean loss so that DDP's gradient average is the global batch's
        mean (1 for equal shares)."""
        return local * self.world_size / total

    def torch_seed(self, base: int) -> int:
        """The torch seed of an epoch: `base` (drawn from (seed, epoch)) in process 0, as in one
        process; a seed derived from (base, rank) in the others, so their draws differ."""
        if self.rank == 0:
            return base
        return int(np.random.default_rng([base, self.rank]).integers(2**62))

    def sum(self, values: Mapping[str, float]) -> dict[str, float]:
        """`values` summed over the processes (the same keys in each)."""
        if not self.distributed:
            return dict(values)
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=self._device())
        dist.all_reduce(t)
        return dict(zip(keys, t.tolist()))

    def broadcast(self, obj: Any) -> Any:
        """Process 0's `obj`, in every process."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self._device())
        return box[0]

    def agree(self, value: Any, what: str) -> None:
        """Fail in a process whose `value` differs from process 0's (e.g. the checkpoint resumed)."""
        first = self.broadcast(value)
        if first != value:
            raise DistributedError(f"process {self.rank} sees {what} {value!r}, process 0 {first!r}; "
                                   "the processes must read the same files")

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The module that runs the training forward: DistributedDataParallel under torchrun
        (process 0's weights broadcast to all), the model itself otherwise."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        # find_unused_parameters: a variant may leave parameters out of a step (e.g. a direction
        # it does not compute); DDP would otherwise wait for their gradients
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                       find_unused_parameters=True)

    def _device(self) -> torch.device:
        """Where collectives of plain values run: NCCL needs CUDA tensors, gloo CPU ones."""
        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


SINGLE = Ranks()


def ranks_from_env(environ: Mapping[str, str] = os.environ) -> Ranks:
    """The process's ranks as torchrun sets them; `SINGLE` without WORLD_SIZE."""
    if "WORLD_SIZE" not in environ:
        return SINGLE
    try:
        return Ranks(rank=int(environ["RANK"]), world_size=int(environ["WORLD_SIZE"]),
                     local_rank=int(environ.get("LOCAL_RANK", environ["RANK"])))
    except (KeyError, ValueError):
        raise DistributedError(f"WORLD_SIZE={environ.get('WORLD_SIZE')!r} RANK={environ.get('RANK')!r}: expected "
                               "the integers torchrun sets") from None


def start(device: torch.device, environ: Mapping[str, str] = os.environ) -> tuple[Ranks, torch.device]:
    """Join the training processes (backend nccl on CUDA, gloo on CPU) and return (ranks, this
    process's device: cuda:LOCAL_RANK on CUDA). One process: (SINGLE, device) untouched."""
    ranks = ranks_from_env(environ)
    if not ranks.distributed:
        return ranks, device
    if device.type == "cuda":
        if ranks.local_rank >= torch.cuda.device_count():
            raise DistributedError(f"process {ranks.rank} has LOCAL_RANK {ranks.local_rank} but this node has "
                                   f"{torch.cuda.device_count()} CUDA devices (torchrun --nproc_per_node at most that)")
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
    log.info("training process %d of %d on %s (%s)", ranks.rank, ranks.world_size, device, dist.get_backend())
    return ranks, device


def stop(ranks: Ranks) -> None:
    """Leave the process group once every process is done (a no-op for one process)."""
    if ranks.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
