"""FineParser's step cutting against direct F.interpolate re-computations (FINEPARSER.md 2.5)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aqa.models.fineparser_cuts import (
    SVE_LENGTHS, i3d_windows, resample_windows, snippet_cuts, sve_windows, uniform_boundaries,
)
from aqa.models.psnet import resample_steps


def _interp(x: torch.Tensor, a: int, b: int, n: int) -> torch.Tensor:
    """F.interpolate of x (T, C)[a:b] to n positions along T, linear, align_corners=True."""
    return F.interpolate(x[a:b].T[None], size=n, mode="linear", align_corners=True)[0].T


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    # F.interpolate rounds its source positions in other fp32 steps (~1e-5 on unit values)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_resample_windows_generalises_resample_steps():
    torch.manual_seed(0)
    x = torch.randn(3, 96, 7)
    bnd = torch.tensor([[30, 70], [1, 95], [47, 48]])
    z = torch.zeros(3, 1, dtype=torch.long)
    starts, ends = torch.cat([z, bnd], 1), torch.cat([bnd, z + 96], 1)
    got = torch.cat(resample_windows(x, starts, ends, (5, 5, 5)), 1)
    torch.testing.assert_close(got, resample_steps(x, bnd, 5))


def test_resample_windows_equals_interpolate_on_each_window():
    torch.manual_seed(1)
    x = torch.randn(2, 96, 4)
    starts = torch.tensor([[0, 25, 60], [0, 3, 80]])
    ends = torch.tensor([[35, 75, 96], [12, 90, 96]])
    parts = resample_windows(x, starts, ends, SVE_LENGTHS)
    for b in range(2):
        for k, n in enumerate(SVE_LENGTHS):
            _close(parts[k][b], _interp(x[b], int(starts[b, k]), int(ends[b, k]), n))


def _seg_pool_1d(u: torch.Tensor, s1: int, s2: int, n: int) -> torch.Tensor:
    """The code's cut (slices [:s1+1], [s1:s2+1], [s2-1:]) recomputed with F.interpolate."""
    return torch.cat([_interp(u, 0, s1 + 1, n), _interp(u, s1, s2 + 1, n), _interp(u, s2 - 1, u.shape[0], n)])


def test_i3d_windows_match_the_codes_slices():
    torch.manual_seed(2)
    u = torch.randn(3, 9, 16)
    bq, be = torch.tensor([[30, 70], [25, 80], [40, 60]]), torch.tensor([[34, 71], [31, 77], [44, 66]])
    s = snippet_cuts(bq, be, "pair_mean")
    assert s.tolist() == [[3, 7], [2, 7], [4, 6]]                      # floor((bq + be) / 20)
    assert torch.equal(s, snippet_cuts(be, bq, "pair_mean"))           # the same for both videos
    starts, ends = i3d_windows(s, 9)
    got = torch.cat(resample_windows(u, starts, ends, (4, 4, 4)), 1)
    for b in range(3):
        _close(got[b], _seg_pool_1d(u[b], *s[b].tolist(), 4))
    assert snippet_cuts(bq, None, "own").tolist() == [[3, 7], [2, 8], [4, 6]]   # floor(b / 10)
    with pytest.raises(ValueError, match="i3d_cut"):
        snippet_cuts(bq, be, "mean")


def test_sve_windows_match_the_codes_slices():
    torch.manual_seed(3)
    x = torch.randn(2, 96, 8)
    b = torch.tensor([[30, 70], [3, 93]])
    starts, ends = sve_windows(b, 96)
    assert starts.tolist() == [[0, 25, 65], [0, 0, 88]] and ends.tolist() == [[35, 75, 96], [8, 96, 96]]
    parts = resample_windows(x, starts, ends, SVE_LENGTHS)
    for i, (b1, b2) in enumerate(b.tolist()):
        ref = [_interp(x[i], 0, b1 + 5, 36), _interp(x[i], max(0, b1 - 5), b2 + 5, 60),
               _interp(x[i], max(0, b2 - 5), 96, 48)]
        for k in range(3):
            _close(parts[k][i], ref[k])


def test_uniform_thirds():
    assert uniform_boundaries(2, 96).tolist() == [[32, 64], [32, 64]]
