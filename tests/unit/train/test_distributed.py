"""aqa.train.distributed: each process's share of a batch, its loss weight and seed, the checks."""

import numpy as np
import pytest
from click.testing import CliRunner

from aqa.cli import main
from aqa.train.distributed import SINGLE, DistributedError, Ranks, ranks_from_env
from aqa.train.loop import _batches
from train_helpers import small_train_params, tiny_dataset, write_params


def test_ranks_come_from_torchruns_environment():
    assert ranks_from_env({}) is SINGLE and not SINGLE.distributed and SINGLE.main
    r = ranks_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert (r.rank, r.world_size, r.local_rank, r.main, r.distributed) == (3, 4, 1, False, True)
    with pytest.raises(DistributedError, match="WORLD_SIZE='2' RANK='x'"):
        ranks_from_env({"WORLD_SIZE": "2", "RANK": "x"})


def test_shares_of_a_batch_make_the_global_batch_and_weight_to_its_mean():
    rows = np.array([7, 3, 9, 1, 4])
    shares = [Ranks(rank=r, world_size=2).shard(rows) for r in range(2)]
    assert [s.tolist() for s in shares] == [[7, 3, 9], [1, 4]]    # contiguous, sizes differ by one
    assert SINGLE.shard(rows) is rows
    # DDP averages the processes' gradients; weighted, the average is the global batch's mean loss
    losses = np.random.default_rng(0).normal(size=rows.size)
    parts = [Ranks(rank=r, world_size=2) for r in range(2)]
    means = [losses[: 3].mean(), losses[3:].mean()]
    ddp = sum(p.loss_weight(s.size, rows.size) * m for p, s, m in zip(parts, shares, means)) / 2
    assert ddp == pytest.approx(losses.mean())


def test_a_trailing_batch_gives_every_process_a_pair():
    assert _batches(13, 4) == [slice(0, 4), slice(4, 8), slice(8, 13)]           # one process: as before
    assert _batches(14, 4) == [slice(0, 4), slice(4, 8), slice(8, 12), slice(12, 14)]
    assert _batches(14, 4, Ranks(world_size=2).min_batch) == _batches(14, 4)     # two: the same batches
    assert _batches(14, 4, Ranks(world_size=4).min_batch) == [slice(0, 4), slice(4, 8), slice(8, 14)]


def test_each_process_has_its_own_torch_seed_process_zero_ones():
    seeds = [Ranks(rank=r, world_size=3).torch_seed(12345) for r in range(3)]
    assert seeds[0] == 12345 == SINGLE.torch_seed(12345)
    assert len(set(seeds)) == 3
    assert seeds == [Ranks(rank=r, world_size=3).torch_seed(12345) for r in range(3)]


def test_a_batch_that_does_not_divide_among_the_processes_is_refused_in_one_line(tmp_path, tiny_params,
                                                                               monkeypatch):
    dives, cache, _ = tiny_dataset(tmp_path, 12)
    params = write_params(tmp_path / "params.yaml", small_train_params(tiny_params, batch_size=3))
    # what torchrun sets in process 0 of 2; refused before the process group is joined
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    result = CliRunner().invoke(main, ["train", "--params", str(params), "--variant", "tsa-dn", "--features",
                                       str(cache), "--annotations", str(dives), "--out", str(tmp_path / "m")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "aqa train: error: variant tsa-dn: batch_size 3 is not a multiple of the 2 training processes (each "
        "process takes batch_size / processes pairs)"]
