"""train.batchnorm: which rows a training-mode BatchNorm normalises together (aqa.models.batchnorm)."""

import copy
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from aqa.models.batchnorm import PairBatchNorm1d, set_batchnorm_mode
from aqa.models.registry import build_model
from train_helpers import TINY_VARIANTS

# Two query rows then two exemplar rows, one channel, length 2: small enough to check by hand.
QUERY = torch.tensor([[[1.0, 3.0]], [[5.0, 7.0]]])       # mean 4, variance 5 (unbiased 20/3)
EXEMPLAR = torch.tensor([[[10.0, 10.0]], [[12.0, 12.0]]])  # mean 11, variance 1
BOTH = torch.cat([QUERY, EXEMPLAR])                        # mean 7.5, variance 122 / 8 = 15.25


def _bn(mode: str, distributed: bool = False) -> tuple[nn.Module, int]:
    net = nn.Sequential(nn.BatchNorm1d(1, eps=1e-12))  # eps ~0: the hand values below
    return net, set_batchnorm_mode(net, mode, distributed=distributed)


def test_joint_normalises_query_and_exemplar_together():
    net, changed = _bn("joint")
    assert changed == 0 and type(net[0]) is nn.BatchNorm1d   # PyTorch's own BatchNorm: today's results
    y = net(BOTH)
    torch.testing.assert_close(y, (BOTH - 7.5) / 15.25 ** 0.5)
    torch.testing.assert_close(net[0].running_mean, torch.tensor([0.75]))          # 0.1 x 7.5
    torch.testing.assert_close(net[0].running_var, torch.tensor([0.9 + 0.1 * 122 / 7]))


def test_split_normalises_each_half_and_keeps_the_query_halfs_running_statistics():
    net, changed = _bn("split")
    assert changed == 1 and isinstance(net[0], PairBatchNorm1d)
    y = net(BOTH)
    torch.testing.assert_close(y[:2], (QUERY - 4.0) / 5.0 ** 0.5)
    torch.testing.assert_close(y[2:], torch.tensor([[[-1.0, -1.0]], [[1.0, 1.0]]]))
    # DataParallel keeps the buffer updates of the replica on device 0: the query half's
    torch.testing.assert_close(net[0].running_mean, torch.tensor([0.4]))
    torch.testing.assert_close(net[0].running_var, torch.tensor([0.9 + 0.1 * 20 / 3]))
    assert int(net[0].num_batches_tracked) == 1
    with pytest.raises(ValueError, match="5 rows"):
        net(torch.zeros(5, 1, 2))
    net.eval()                     # eval: the running statistics, whatever the mode
    torch.testing.assert_close(net(BOTH), (BOTH - 0.4) / (0.9 + 0.1 * 20 / 3) ** 0.5)


def test_sync_in_one_process_is_joint():
    net, changed = _bn("sync")
    assert changed == 0 and type(net[0]) is nn.BatchNorm1d
    with pytest.raises(ValueError, match="expected one of"):
        _bn("halves")


def test_split_tsa_equals_encoding_query_and_exemplar_apart():
    """The reference's two DataParallel replicas: PSNet on the query batch alone and on the
    exemplar batch alone (pooled and maps); running statistics from the query's passes only."""
    torch.manual_seed(0)
    cfg = {k: v for k, v in TINY_VARIANTS["tsa"].items() if k != "method"}
    plain = build_model("tsa", **cfg).train()
    split = copy.deepcopy(plain)
    assert set_batchnorm_mode(split, "split", distributed=False) == 10   # PSNet's ten BatchNorm1d
    query_only = copy.deepcopy(plain)

    def batch(n):
        return {"pooled": torch.randn(n, 9, 128), "maps": torch.randn(n, 9, 128, 4, 4),
                "transitions": torch.tensor([[20, 60]] * n)}

    q, e = batch(3), batch(3)
    both = {k: torch.cat([q[k], e[k]]) for k in q}
    enc = split.encode(both, "gt")
    enc_q, enc_e = plain.encode(q, "gt"), copy.deepcopy(plain).encode(e, "gt")
    for key in ("tokens", "memory", "seg"):
        torch.testing.assert_close(enc[key][:3], enc_q[key], rtol=0, atol=0)
        torch.testing.assert_close(enc[key][3:], enc_e[key], rtol=0, atol=0)
    query_only.encode(q, "gt")
    for (name, a), b in zip(split.named_buffers(), query_only.buffers()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    # the joint model's statistics are those of all six rows: not the same
    joint = plain.encode(both, "gt")
    assert not torch.allclose(joint["tokens"][:3], enc_q["tokens"])


# ---------------------------------------------------------------- several processes (gloo)

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _module(mode: str, distributed: bool) -> nn.Module:
    bn = nn.BatchNorm1d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, -0.5]))
        bn.bias.copy_(torch.tensor([0.0, 1.0, 3.0]))
    net = nn.Sequential(bn)
    set_batchnorm_mode(net, mode, distributed=distributed)
    return net.train()


def _rows(world: int, rank: int, x: torch.Tensor) -> torch.Tensor:
    """A process's share of a [query; exemplar] batch: its part of each half, query part first."""
    q, e = x.chunk(2)
    return torch.cat([q.chunk(world)[rank], e.chunk(world)[rank]])


MODES = (("split", "split"), ("sync", "joint"))   # (mode in two processes, its one-process equal)


def _worker(rank, world, port, x, g, results):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    for mode, _ in MODES:
        net = _module(mode, distributed=True)
        xr = _rows(world, rank, x).requires_grad_()
        y = net(xr)
        (y * _rows(world, rank, g)).sum().backward()     # the processes' losses add up to the whole batch's
        grads = [p.grad.clone() for p in net.parameters()]
        for t in grads:
            dist.all_reduce(t)
        # numpy: pickled by value (a shared tensor would die with this process)
        results.put((mode, rank, [t.detach().numpy() for t in [y, xr.grad, *grads, *net[0].buffers()]]))
    dist.barrier()
    dist.destroy_process_group()


def test_two_processes_normalise_the_global_batch():
    """Under DDP, split and sync take their statistics over all processes' rows (two gloo
    processes, four query and four exemplar rows): outputs, input gradients, summed parameter
    gradients and running statistics equal one process's on the whole batch (split: split;
    sync: joint), to float32 rounding."""
    torch.manual_seed(1)
    x = torch.randn(8, 3, 5) * torch.tensor([1.0, 3.0, 0.5])[:, None] + 2.0
    g = torch.randn(8, 3, 5)
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, x, g, results)) for r in range(2)]
    for p in procs:
        p.start()
    got = {(mode, rank): arrays for mode, rank, arrays in (results.get(timeout=120) for _ in range(4))}
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for mode, single in MODES:
        ref = _module(single, distributed=False)
        xs = x.clone().requires_grad_()
        y_ref = ref(xs)
        (y_ref * g).sum().backward()
        for rank in range(2):
            expected = [_rows(2, rank, y_ref.detach()), _rows(2, rank, xs.grad), *[p.grad for p in ref.parameters()],
                        *ref[0].buffers()]
            assert len(got[mode, rank]) == len(expected) == 7   # y, x.grad, 2 grads, 3 buffers
            for a, b in zip(got[mode, rank], expected):
                torch.testing.assert_close(torch.from_numpy(a), b.detach(), rtol=1e-5, atol=1e-5,
                                           msg=f"{mode}, process {rank}")
