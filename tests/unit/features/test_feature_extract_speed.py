"""extract_features' speed-ups compute the same bytes (issue 9, session 18): the frozen I3D with
separable max-pools (aqa.models.sap_pool), the SVE backbone's 2D pools without a padded copy
(sve_backbone.MaxPool2dSame) give the old outputs bit for bit under the stage's autocast, and the
SVE's frame de-duplication is np.unique's."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aqa.features import additions as A
from aqa.features import extract as X
from aqa.models.i3d import InceptionI3d, MaxPool3dSame
from aqa.models.sap_pool import SeparableMaxPool3dSame
from aqa.models.sve_backbone import MaxPool2dSame, _pad2d, normalize_frames

CPU = torch.device("cpu")


class PaddedMaxPool2dSame(MaxPool2dSame):
    """The pool before the speed-up: an explicit -inf padded copy, then torch's pool."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads, _ = _pad2d(x, self.kernel, self.stride)
        return F.max_pool2d(F.pad(x, pads, value=float("-inf")), self.kernel, self.stride)


def _torch_pools(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` with the pools of the code before the speed-up."""
    model = copy.deepcopy(model)
    back = {SeparableMaxPool3dSame: MaxPool3dSame, MaxPool2dSame: PaddedMaxPool2dSame}
    for m in model.modules():
        if type(m) in back:
            m.__class__ = back[type(m)]
    return model


@pytest.fixture(scope="module")
def state():
    torch.manual_seed(0)
    return InceptionI3d().state_dict()


@pytest.mark.parametrize("dtype", [torch.float32, X.compute_dtype(CPU, True)])
def test_extraction_i3d_with_separable_pools_gives_the_same_bytes(state, dtype):
    model = X.load_backbone(state, CPU)
    assert sum(type(m) is SeparableMaxPool3dSame for m in model.modules()) == 13  # 4 + 9 Mixed
    old = _torch_pools(model)
    assert not any(type(m) is SeparableMaxPool3dSame for m in old.modules())
    torch.manual_seed(1)
    clips = torch.randint(0, 256, (3, 3, 16, 112, 112), dtype=torch.uint8)
    want = X.forward_snippets(old, clips, "imagenet", CPU, dtype, with_mixed4f=True)
    got = X.forward_snippets(model, clips, "imagenet", CPU, dtype, with_mixed4f=True)
    for a, b in zip(want, got):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", [torch.float32, X.compute_dtype(CPU, True)])
def test_sve_backbone_with_unpadded_pools_gives_the_same_bytes(state, dtype):
    net, _ = A.load_sve_backbone({"sve_backbone": "i3d2d"}, state, CPU)
    old = _torch_pools(net)
    assert sum(type(m) is PaddedMaxPool2dSame for m in old.modules()) == 8    # 3 + 5 Mixed
    torch.manual_seed(2)
    views = torch.randint(0, 256, (1, 12, 112, 112, 3), dtype=torch.uint8).numpy()
    views[0, 6:] = views[0, :6]                      # repeated frames, as a short dive's
    want = A.sve_features(old, views, CPU, dtype)
    got = A.sve_features(net, views, CPU, dtype)
    assert got.tobytes() == want.tobytes()
    # and per layer the maps themselves, in whatever layout oneDNN returned them
    x = normalize_frames(torch.from_numpy(views[0]).permute(0, 3, 1, 2), net.normalization)
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        for name in net.names:
            a, b = getattr(old, name)(x), getattr(net, name)(x)
            assert torch.equal(a, b) and a.stride() == b.stride(), name
            x = a


# every path: symmetric padding, SAME's end-only padding by ceil_mode (even / odd sizes), and the
# padded copy where neither fits (a 2 x 2 stride-1 pool pads only at the end but is not ceil_mode's)
@pytest.mark.parametrize("shape, kernel, stride, channels_last", [
    ((2, 3, 9, 8), (3, 3), (2, 2), False), ((2, 3, 8, 8), (3, 3), (2, 2), True),
    ((1, 4, 7, 7), (3, 3), (1, 1), True), ((1, 2, 6, 5), (2, 2), (2, 2), False),
    ((1, 2, 5, 6), (2, 2), (1, 1), False), ((1, 2, 7, 9), (3, 3), (3, 3), True),
    ((1, 2, 1, 1), (3, 3), (2, 2), False)])
def test_unpadded_2d_pool_equals_the_padded_one(shape, kernel, stride, channels_last):
    torch.manual_seed(3)
    x = torch.randn(shape).clamp_min(0)              # ReLU maps: many ties
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    want = PaddedMaxPool2dSame(kernel, stride)(x1)
    got = MaxPool2dSame(kernel, stride)(x2)
    assert got.shape == want.shape and torch.equal(got, want) and got.stride() == want.stride()
    weights = torch.rand(want.shape)
    (want * weights).sum().backward()
    (got * weights).sum().backward()
    assert torch.equal(x1.grad, x2.grad)             # the same arg-max of each window


def test_distinct_frames_are_np_unique_s():
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (20, 4, 5, 3), dtype=np.uint8)
    frames[10:] = frames[rng.integers(0, 10, 10)]    # repeats, in any order
    frames[3] = frames[4]
    frames[3, -1, -1, -1] ^= 0x80                    # differs only in its last byte (unsigned order)
    want, want_inv = np.unique(frames.reshape(20, -1), axis=0, return_inverse=True)
    got, inverse = A.distinct_frames(frames)
    assert np.array_equal(got.reshape(len(got), -1), want)
    assert np.array_equal(inverse, np.asarray(want_inv).reshape(-1))
    assert np.array_equal(got[inverse], frames)
