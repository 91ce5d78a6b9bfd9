"""MLflow tracking: one experiment per dataset, one run per (variant, seed), evaluation linked.

Uses `MlflowClient` with explicit run ids rather than the fluent API's global active run, so a
resumed training run continues the run id stored in its checkpoint and an evaluation run can
name its training run as parent (shown nested in the MLflow UI).
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from aqa import provenance

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"   # the tag MLflow's UI uses to nest runs


def resolve_tracking_uri(uri: str | None) -> str:
    """The argument, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the current directory."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


def _artifact_root(uri: str) -> str | None:
    """Artefacts beside a local sqlite store (not in ./mlruns of whatever the working directory is)."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):]).resolve()
        return (db.parent / "mlartifacts").as_uri()
    return None  # a tracking server decides


def flatten(d: Mapping[str, Any]) -> dict[str, str]:
    """Nested params as dotted keys with string values (MLflow params are strings)."""
    return {k: str(v) for k, v in provenance.flatten(d).items()}


class Tracker:
    """A client bound to one experiment of one tracking store."""

    def __init__(self, tracking_uri: str | None, experiment: str):
        self.uri = resolve_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.experiment_id = self._experiment(experiment)

    def _experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=_artifact_root(self.uri))
        except MlflowException:  # another job created it meanwhile
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def start(self, run_name: str, *, params: Mapping[str, Any], tags: Mapping[str, str],
              run_id: str | None = None, parent_run_id: str | None = None) -> str:
        """Create a run (or reopen `run_id` when it exists in this store); return its id."""
        if run_id is not None:
            try:
                self.client.update_run(run_id, status="RUNNING")
                log.info("continuing MLflow run %s", run_id)
                return run_id
            except MlflowException:
                log.warning("MLflow run %s is not in %s; starting a new run", run_id, self.uri)
        all_tags = dict(tags)
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
        run_id = run.info.run_id
        flat = flatten(params)
        items = [Param(k, v[:6000]) for k, v in sorted(flat.items())]
        for i in range(0, len(items), 100):   # MLflow's per-batch limit
            self.client.log_batch(run_id, params=items[i:i + 100])
        log.info("MLflow run %s in experiment %s (%s)", run_id, self.experiment_id, self.uri)
        return run_id

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items())
                 if v is not None and not (isinstance(v, float) and math.isnan(v))]
        if items:
            self.client.log_batch(run_id, metrics=items)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def find_run(self, tags: Mapping[str, str]) -> str | None:
        """The newest run of this experiment carrying all `tags`, if any."""
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([self.experiment_id], filter_string=query,
                                       order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0].info.run_id if runs else None
