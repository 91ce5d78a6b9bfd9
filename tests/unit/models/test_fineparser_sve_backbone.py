"""The SVE backbones: the I3D -> 2D inflation in reverse, and the weights files that must be
there (never a random backbone)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from aqa.errors import AqaError
from aqa.models.fetch_i3d import import_state_dict
from aqa.models.i3d import InceptionI3d, Unit3D
from aqa.models.sve_backbone import (
    SVEBackboneError, Unit2D, build_sve_backbone, frame_features, i3d2d_from_state_dict, load_resnet34,
)

from fineparser_data import kinetics_like


def test_summed_kernel_2d_conv_equals_3d_conv_on_a_static_clip():
    torch.manual_seed(0)
    u3 = Unit3D(4, 6, (3, 3, 3)).eval()
    u3.batch3d.running_mean.normal_()
    u2 = Unit2D(4, 6, (3, 3)).eval()
    u2.load_state_dict({"conv.weight": u3.conv3d.weight.sum(2), "bn.weight": u3.batch3d.weight,
                        "bn.bias": u3.batch3d.bias, "bn.running_mean": u3.batch3d.running_mean,
                        "bn.running_var": u3.batch3d.running_var, "bn.num_batches_tracked": torch.tensor(0)})
    frame = torch.randn(2, 4, 9, 9)
    clip = frame[:, :, None].expand(2, 4, 7, 9, 9)                    # the frame repeated over time
    y3, y2 = u3(clip), u2(frame)
    for t in range(1, 6):                                             # away from the temporal borders
        torch.testing.assert_close(y3[:, :, t], y2, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(y3[:, :, 0], y2, atol=1e-3)             # the border sees the zero padding


def test_i3d2d_network_equals_i3d_on_a_static_clip():
    sd = kinetics_like(3)
    i3d = InceptionI3d().eval()
    i3d.load_state_dict(sd)
    net = i3d2d_from_state_dict(sd, "mixed_4d")
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    frame = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        x = frame[:, :, None].expand(1, 3, 64, 32, 32).contiguous()
        for name in net.names:                                        # I3D itself, up to Mixed_4d
            x = getattr(i3d, name)(x)                                 # (1, 512, 16, 2, 2)
        y2 = net(frame)                                               # (1, 512, 2, 2)
    assert y2.shape == (1, 512, 2, 2) and x.shape[2] == 16
    torch.testing.assert_close(x[:, :, 8], y2, rtol=1e-4, atol=1e-4)   # the middle of the clip


def test_i3d2d_from_fetch_i3d_weights(tmp_path):
    src = tmp_path / "model_rgb.pth"
    torch.save(kinetics_like(4), src)
    import_state_dict(src, tmp_path / "i3d")                          # writes the manifest
    net = build_sve_backbone("i3d2d", tmp_path / "i3d" / "kinetics400_rgb.pt")
    feats = frame_features(net, torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8))
    assert feats.shape == (3, 512)
    wide = build_sve_backbone("i3d2d", tmp_path / "i3d" / "kinetics400_rgb.pt", layer="mixed_5c")
    assert frame_features(wide, torch.zeros(1, 3, 64, 64, dtype=torch.uint8)).shape == (1, 1024)
    # damaged since fetch_i3d wrote it: refused
    with open(tmp_path / "i3d" / "kinetics400_rgb.pt", "ab") as f:
        f.write(b"x")
    with pytest.raises(AqaError, match="sha256"):
        build_sve_backbone("i3d2d", tmp_path / "i3d" / "kinetics400_rgb.pt")


def test_missing_weights_never_give_a_random_backbone(tmp_path):
    for name in ("i3d2d", "resnet34"):
        with pytest.raises(AqaError, match="not found"):
            build_sve_backbone(name, tmp_path / "absent.pth")
    with pytest.raises(SVEBackboneError, match="must be one of"):
        build_sve_backbone("resnet50", tmp_path / "absent.pth")


def test_resnet34_file_checked_against_torchvisions_hash(tmp_path):
    torch.manual_seed(5)
    path = tmp_path / "resnet34-b627a593.pth"                        # the right name is not enough
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(SVEBackboneError, match="b627a593"):
        load_resnet34(path)
    # with a pinned full digest the same loading code accepts it: torchvision's architecture, no download
    from aqa.provenance import sha256_file

    net = load_resnet34(path, sha256=sha256_file(path))
    assert net.out_dim == 512
    assert frame_features(net, torch.zeros(2, 3, 112, 112, dtype=torch.uint8)).shape == (2, 512)
    # the right digest of a file that is not resnet34 weights: one-line error
    other = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), other)
    with pytest.raises(SVEBackboneError, match="not torchvision resnet34") as exc:
        load_resnet34(other, sha256=sha256_file(other))
    assert "\n" not in str(exc.value)
