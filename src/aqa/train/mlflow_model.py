"""A trained seed as an MLflow model (the pytorch flavour), and the best seed in the registry.

The logged model is the method's own `nn.Module` with the best-validation weights (best_val.pt,
the honest protocol's choice). It is called as in the pipeline: a direct method (I3D+MLP, USDL,
MUSDL) as `model(batch)`, a pairwise one (F+R ..., TSA, CoRe) as `model(query, exemplar)`, the
batches being the dicts `DiveData.batch` makes. Its signature is inferred from a real batch of
the training data: inputs named by batch key (pairwise: `query.<key>` and `exemplar.<key>`),
outputs the model's output tensors. The pyfunc flavour takes one array and cannot feed these
dicts: load it with `mlflow.pytorch.load_model(uri)`.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

import aqa
from aqa.train.tracking import Tracker

log = logging.getLogger(__name__)

MODEL_NAME = "model"          # the logged model's name in its run
MODEL_ID_TAG = "aqa.model_id"  # set on the training run: the MLflow logged model's id
SIGNATURE_ROWS = 2            # dives in the batch the signature is inferred from


def registered_name(dataset: str, variant: str) -> str:
    """The registry name of a variant's model: dataset-qualified, e.g. "finediving.fr-dn"."""
    return f"{dataset}.{variant}"


def _numpy(tensors: dict[str, torch.Tensor], prefix: str = "") -> dict[str, np.ndarray]:
    return {f"{prefix}{k}": v.detach().float().cpu().numpy() if v.is_floating_point() else v.cpu().numpy()
            for k, v in tensors.items() if isinstance(v, torch.Tensor)}


@torch.no_grad()
def example_io(model: torch.nn.Module, data, rows: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(inputs, outputs) of the model on a real batch of `rows`, as named arrays."""
    from aqa.evaluate.voting import _eval_mode
    from aqa.train.data import uses_maps

    rows = np.asarray(rows)[:SIGNATURE_ROWS]
    maps = uses_maps(model)
    with _eval_mode(model):
        if getattr(model, "pairwise", True):
            q, e = data.batch(rows, with_maps=maps), data.batch(rows[::-1].copy(), with_maps=maps)
            return {**_numpy(q, "query."), **_numpy(e, "exemplar.")}, _numpy(model(q, e))
        batch = data.batch(rows, with_maps=maps)
        return _numpy(batch), _numpy(model(batch))


def _requirements() -> list[str]:
    """Pinned so MLflow does not infer them (it would load the model in a subprocess: seconds)."""
    out = []
    for name in ("torch", "numpy", "pandas", "pyarrow", "mlflow"):
        try:
            out.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


@contextlib.contextmanager
def _quiet_pickle_warning():
    """MLflow warns at every pickled model; the choice is deliberate (see log_seed_model)."""
    logger = logging.getLogger("mlflow.pytorch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _no_requirement_check():
    """MLflow compares the pinned requirements with the installed packages only to warn, and to do
    so maps every installed module to its distribution (~0.5 s at a process's first log). The pins
    are this environment's own versions (_requirements), so it could never warn: skipped. Nothing
    it writes depends on it."""
    from mlflow.utils import environment

    check = environment.warn_dependency_requirement_mismatches
    environment.warn_dependency_requirement_mismatches = lambda requirements: None
    try:
        yield
    finally:
        environment.warn_dependency_requirement_mismatches = check


def log_seed_model(tracker: Tracker, run_id: str, model: torch.nn.Module, data, rows: np.ndarray) -> str:
    """Log `model` (CPU copy, eval mode) as the MLflow model of training run `run_id`, with the
    package's source (code_paths: it loads without an install); return its model URI."""
    import mlflow
    from mlflow.models import infer_signature

    inputs, outputs = example_io(model, data, rows)
    signature = infer_signature(inputs, outputs)
    cpu = model.to("cpu").eval()
    with tracker.fluent(), mlflow.start_run(run_id=run_id), _quiet_pickle_warning(), _no_requirement_check():
        # pickle, not MLflow 3's default pt2: the models take dicts of tensors, which pt2's
        # traced graphs (one array input) cannot
        info = mlflow.pytorch.log_model(cpu, name=MODEL_NAME, signature=signature,
                                        code_paths=[str(Path(aqa.__file__).parent)],
                                        pip_requirements=_requirements(), serialization_format="pickle")
    tracker.set_tags(run_id, {MODEL_ID_TAG: info.model_id})
    return info.model_uri


def register_best(tracker: Tracker, name: str, run_id: str, tags: dict[str, Any]) -> int | None:
    """Register the model of training run `run_id` under `name`; return its version. No new
    version when the latest one already is that model (re-evaluation adds none)."""
    from mlflow.exceptions import MlflowException

    client = tracker.client
    run = client.get_run(run_id)
    model_id = run.data.tags.get(MODEL_ID_TAG)
    if model_id is None:
        log.warning("run %s has no logged model: nothing registered under %s", run_id, name)
        return None
    try:
        client.create_registered_model(name, description="The best seed (highest validation rho) of "
                                                         "the variant, as the honest protocol picks it.")
    except MlflowException:
        pass   # exists
    versions = client.search_model_versions(f"name = '{name}'")
    latest = max(versions, key=lambda v: int(v.version), default=None)
    source = f"models:/{model_id}"
    if latest is not None and latest.source == source:   # (search leaves ModelVersion.model_id unset)
        version = int(latest.version)
    else:
        with tracker.fluent():
            version = int(client.create_model_version(name, source=source, run_id=run_id,
                                                      model_id=model_id).version)
    for k, v in tags.items():
        client.set_model_version_tag(name, str(version), k, str(v))
    return version
