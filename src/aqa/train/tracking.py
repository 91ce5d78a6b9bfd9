"""MLflow tracking: one experiment per dataset; per variant a parent run, one child run per seed.

Layout in the store (the MLflow UI shows it nested):

    experiment <dataset>
      <variant>                      role "variant": mean and std over seeds of the evaluation
        <variant>-seed<k>            role "train": per-epoch metrics, the logged model ("model")
          <variant>-seed<k>-eval     role "evaluation": honest / paper metrics, predictions

Runs are found again by their tags (aqa.role, variant, seed), so a re-run updates a run rather
than adding one. Uses `MlflowClient` with explicit run ids rather than the fluent API's global
active run, so a resumed training run continues the run id stored in its side file run.json.

Artefacts live beside a local sqlite store, in `mlartifacts/`, under a location stored RELATIVE
to the store's folder (MLflow would store an absolute path): a moved or cloned checkout still
finds them, and `mlflow ui` started in that folder serves them.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils import mlflow_tags

from aqa import provenance

log = logging.getLogger(__name__)

PARENT_TAG = mlflow_tags.MLFLOW_PARENT_RUN_ID   # the tag MLflow's UI uses to nest runs
ROLE = "aqa.role"                                # variant | train | evaluation
ARTIFACTS = "mlartifacts"                        # beside the sqlite store


def resolve_tracking_uri(uri: str | None) -> str:
    """The argument, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the current directory."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


def sqlite_folder(uri: str) -> Path | None:
    """The folder of a local sqlite store (where its relative artefact paths resolve), else None."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).resolve().parent
    return None


def flatten(d: Mapping[str, Any]) -> dict[str, str]:
    """Nested params as dotted keys with string values (MLflow params are strings)."""
    return {k: str(v) for k, v in provenance.flatten(d).items()}


def source_tags(entry_point: str, cwd: str | Path | None = None) -> dict[str, str]:
    """MLflow's own source tags (what its fluent API sets): the git commit, branch and remote of
    the working directory's repository, the entry point, the user."""
    def git(*args: str) -> str:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
            return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    tags = {mlflow_tags.MLFLOW_SOURCE_NAME: entry_point, mlflow_tags.MLFLOW_SOURCE_TYPE: "LOCAL"}
    try:
        tags[mlflow_tags.MLFLOW_USER] = getpass.getuser()
    except (KeyError, OSError):
        pass
    for key, args in ((mlflow_tags.MLFLOW_GIT_COMMIT, ("rev-parse", "HEAD")),
                      (mlflow_tags.MLFLOW_GIT_BRANCH, ("rev-parse", "--abbrev-ref", "HEAD")),
                      (mlflow_tags.MLFLOW_GIT_REPO_URL, ("remote", "get-url", "origin"))):
        value = git(*args)
        if value:
            tags[key] = value
    return tags


class Tracker:
    """A client bound to one experiment of one tracking store."""

    def __init__(self, tracking_uri: str | None, experiment: str):
        self.uri = resolve_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self.root = sqlite_folder(self.uri)
        self.experiment_id = self._experiment(experiment)

    def _experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            exp_id = self.client.create_experiment(name)
        except MlflowException:  # another job created it meanwhile
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id
        if self.root is not None:
            self._relative_artifact_location(exp_id)
        return exp_id

    def _relative_artifact_location(self, exp_id: str) -> None:
        """Store the new experiment's artefact location as `mlartifacts/<id>`, relative to the
        store's folder. MLflow's API resolves a relative location to an absolute one, so this
        writes the column itself, before the experiment has any run (runs copy the location)."""
        import sqlalchemy

        engine = sqlalchemy.create_engine(self.uri)
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("UPDATE experiments SET artifact_location = :loc WHERE experiment_id = :id"),
                         {"loc": f"{ARTIFACTS}/{exp_id}", "id": int(exp_id)})
        engine.dispose()

    @contextlib.contextmanager
    def at_root(self) -> Iterator[None]:
        """Relative artefact paths resolve against the working directory: be in the store's folder."""
        if self.root is None:
            yield
        else:
            with contextlib.chdir(self.root):
                yield

    @contextlib.contextmanager
    def fluent(self) -> Iterator[None]:
        """MLflow's global tracking and registry URI set to this store, in its folder: for the
        calls that only use the global one (the fluent log_model; the registry reading a logged
        model: MLflow's own TODO in create_model_version)."""
        import mlflow
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils

        # restored as they were: the module globals (get_*_uri() would resolve an unset URI to a
        # default and pin the caller to it) and the environment variables set_*_uri() also sets
        previous = tracking_utils._tracking_uri, registry_utils._registry_uri
        env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        try:
            with self.at_root():
                yield
        finally:
            tracking_utils._tracking_uri, registry_utils._registry_uri = previous
            for key, value in env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

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
        self.log_params(run_id, params)
        log.info("MLflow run %s in experiment %s (%s)", run_id, self.experiment_id, self.uri)
        return run_id

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        items = [Param(k, v[:6000]) for k, v in sorted(flatten(params).items())]
        for i in range(0, len(items), 100):   # MLflow's per-batch limit
            self.client.log_batch(run_id, params=items[i:i + 100])

    def reuse_or_start(self, run_name: str, *, key: Mapping[str, str], params: Mapping[str, Any],
                       tags: Mapping[str, str], parent_run_id: str | None = None) -> str:
        """The run of this experiment tagged with all of `key` (reopened, its tags updated), else a
        new one. MLflow params cannot change: when they differ, the old run is deleted and replaced,
        so there is still one run per key."""
        found = self.find(key)
        if found is not None:
            flat = {k: v[:6000] for k, v in flatten(params).items()}
            if {k: found.data.params.get(k) for k in flat} == flat and \
                    found.data.tags.get(PARENT_TAG) == parent_run_id:
                self.client.update_run(found.info.run_id, status="RUNNING")
                self.set_tags(found.info.run_id, tags)
                return found.info.run_id
            self.client.delete_run(found.info.run_id)
            log.info("MLflow run %s replaced (its params or parent changed)", found.info.run_id)
        return self.start(run_name, params=params, tags={**tags, **key}, parent_run_id=parent_run_id)

    def variant_run(self, variant: str, tags: Mapping[str, str]) -> str:
        """The variant's parent run (created, FINISHED, when missing); the seeds' runs nest under it."""
        key = {ROLE: "variant", "variant": variant}
        found = self.find(key)
        if found is not None:
            return found.info.run_id
        run_id = self.start(variant, params={}, tags={**tags, **key})
        self.finish(run_id)
        return run_id

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items())
                 if v is not None and not (isinstance(v, float) and math.isnan(v))]
        for i in range(0, len(items), 1000):   # MLflow's per-batch limit
            self.client.log_batch(run_id, metrics=items[i:i + 1000])

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        if tags:
            self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path).resolve()
        with self.at_root():
            self.client.log_artifact(run_id, str(path), artifact_path)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def find(self, tags: Mapping[str, str]):
        """The newest active run of this experiment carrying all `tags`, if any."""
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([self.experiment_id], filter_string=query,
                                       order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0] if runs else None

    def find_run(self, tags: Mapping[str, str]) -> str | None:
        """The id of `find(tags)`, if any."""
        run = self.find(tags)
        return run.info.run_id if run else None
