"""Self-describing checkpoints: weights plus everything needed to resume or rebuild the model.

A checkpoint holds only tensors and plain Python values, so it loads with
`torch.load(weights_only=True)`: no arbitrary unpickling of a file that came from elsewhere.
It holds nothing that depends on the machine, the folder or the time (the same training gives
the same bytes): the MLflow run id, the git commit and the epochs' wall-clock seconds go to the
side file `run.json` beside it, which .dvcignore keeps out of the DVC hash of the model folder.
"""

from __future__ import annotations

import io
import json
import logging
import random
import subprocess
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aqa.errors import AqaError
from aqa.io import write_bytes_atomic, write_json_atomic

log = logging.getLogger(__name__)

RUN_INFO = "run.json"


class CheckpointError(AqaError):
    """A checkpoint is missing, damaged, or was made from other inputs than the current ones."""


class ModelFolderError(AqaError):
    """A model folder cannot be written."""


def git_commit(cwd: str | Path | None = None) -> str:
    """`git rev-parse HEAD` of the working directory's repository, "unknown" outside one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=True)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def rng_states() -> dict[str, Any]:
    """Global RNG states of torch, numpy and python, as plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x: Any) -> Any:
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


def set_rng_states(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed torch, numpy's and python's global generators: their states are saved in checkpoints,
    and an unseeded one (seeded from the OS) would make two identical trainings' files differ."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` atomically (a killed write leaves the previous checkpoint intact).

    Serialised in memory first: torch.save names the zip's records after the file it writes,
    and the temporary file's name is random, so saving to it would give different bytes each time.
    """
    buffer = io.BytesIO()
    torch.save(_canonical(state), buffer)
    write_bytes_atomic(path, buffer.getvalue())


def _canonical(obj: Any) -> Any:
    """Fresh containers and interned strings, tensors kept.

    Pickle writes a back-reference for an object it has seen: whether two equal strings are one
    object (a literal of the code) or two (read back from a checkpoint) changes the bytes. After
    this, the same values give the same bytes whether the training ran through or resumed.
    """
    if isinstance(obj, OrderedDict):      # a state dict: keep its type and its version metadata
        out = OrderedDict((_canonical(k), _canonical(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = _canonical(obj._metadata)
        return out
    if isinstance(obj, dict):
        return {_canonical(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_canonical(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_canonical(v) for v in obj)
    if type(obj) is str:
        return sys.intern(obj)
    return obj


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint at `path`; CheckpointError (one line, no advice to unpickle unsafely) if it
    is missing, damaged or not a checkpoint of this pipeline."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt or foreign file
        raise CheckpointError(f"{path}: damaged, truncated or not a checkpoint ({type(exc).__name__} "
                              "while reading it)") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a checkpoint of this pipeline (holds a {type(state).__name__})")
    for key in ("model", "config", "epoch"):
        if key not in state:
            raise CheckpointError(f"{path}: not a checkpoint of this pipeline (no {key!r})")
    return state


def ensure_writable(folder: str | Path) -> None:
    """Create `folder` if needed and prove it can take a new file; ModelFolderError otherwise.

    Called before a training discards anything: a folder that cannot take the new checkpoints
    keeps the old ones.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ModelFolderError(f"{folder}: expected a model folder, found a file; move it away")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check."):
            pass
    except OSError as exc:
        raise ModelFolderError(f"{folder}: cannot write the model folder ({exc.strerror or exc}); "
                               "check its permissions") from None


def read_run_info(seed_dir: str | Path) -> dict[str, Any]:
    """The side file run.json of a seed folder ({} when absent or unreadable: it is only a record)."""
    path = Path(seed_dir) / RUN_INFO
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def write_run_info(seed_dir: str | Path, info: dict[str, Any]) -> None:
    write_json_atomic(Path(seed_dir) / RUN_INFO, info)
