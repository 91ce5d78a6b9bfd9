"""Whether a seed folder's checkpoint may be resumed (or its finished training skipped).

A checkpoint is reused only when it was made from the same inputs as now: the same config and
the same provenance (annotations, features, code, params; aqa.provenance). Anything else -- a
damaged file, other inputs, a finished training whose best_val.pt or history.json is damaged --
is logged in one line and the seed trains afresh. Nothing is deleted here: the new training
replaces the old files one atomic write at a time, so a failure leaves what was there.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

import torch

from aqa.provenance import TRAIN_CODE, changed_inputs, changed_keys, code_fingerprint, sha256_json
from aqa.train.checkpoint import CheckpointError, load_checkpoint

log = logging.getLogger(__name__)

CHECKPOINT, BEST, HISTORY = "checkpoint.pt", "best_val.pt", "history.json"


def training_inputs(config: dict[str, Any], annotations: str, features: str) -> dict[str, str]:
    """The provenance record of one seed's training (stored in its checkpoints)."""
    return {"annotations": annotations, "features": features, "code": code_fingerprint(TRAIN_CODE),
            "params": sha256_json(config)}


def stale_reason(state: Mapping[str, Any], config: dict[str, Any], inputs: Mapping[str, str]) -> str | None:
    """Why a checkpoint cannot stand for a training with `config` on `inputs` (None: it can)."""
    if state.get("config") != config:
        return f"written with another config ({', '.join(changed_keys(state.get('config') or {}, config))} differ)"
    changed = [name for name in changed_inputs(state.get("provenance"), inputs) if name != "params"]
    if changed:
        return f"made from other {', '.join(changed)} than the current ones"
    return None


def _finished_outputs_problem(seed_dir: Path, config: dict[str, Any], inputs: Mapping[str, str],
                              device: torch.device) -> str | None:
    """A finished training is skipped only if evaluate can use what it left."""
    try:
        best = load_checkpoint(seed_dir / BEST, map_location=device)
    except CheckpointError as exc:
        return str(exc)
    reason = stale_reason(best, config, inputs)
    if reason:
        return f"{seed_dir / BEST}: {reason}"
    try:
        history = json.loads((seed_dir / HISTORY).read_text())
    except (OSError, ValueError) as exc:
        return f"{seed_dir / HISTORY}: unreadable ({type(exc).__name__})"
    if not isinstance(history, list) or len(history) != config["train"]["epochs"]:
        return f"{seed_dir / HISTORY}: does not hold the {config['train']['epochs']} epochs of the checkpoint"
    return None


def resumable_checkpoint(seed_dir: Path, config: dict[str, Any], inputs: Mapping[str, str],
                         device: torch.device, what: str) -> dict[str, Any] | None:
    """The checkpoint to resume from (or a finished one to skip); None to train `what` afresh."""
    path = seed_dir / CHECKPOINT
    if not path.exists():
        return None
    try:
        state = load_checkpoint(path, map_location=device)
    except CheckpointError as exc:
        log.warning("%s: training %s afresh", exc, what)
        return None
    reason = stale_reason(state, config, inputs)
    if reason:
        log.warning("%s: %s: training %s afresh", path, reason, what)
        return None
    if state.get("finished"):
        problem = _finished_outputs_problem(seed_dir, config, inputs, device)
        if problem:
            log.warning("%s: training %s afresh", problem, what)
            return None
    return state
