"""The train stage: `train_variant` trains one "<variant>-<mode>" for every seed in params."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aqa.errors import AqaError
from aqa.logs import num
from aqa.models.registry import needs_step_labels
from aqa.train import distributed
from aqa.train.checkpoint import ensure_writable
from aqa.train.data import DiveData, load_dive_data, split_validation
from aqa.train.loop import SeedRun, resolve_device, train_seed
from aqa.trained import stage_name

log = logging.getLogger(__name__)


class VariantError(AqaError):
    """A variant name that params do not define."""


# params.train keys a variant may set for itself (`train:` inside its entry; BASELINES.md D6: the
# sources' lr, weight decay, batch and epochs of each baseline; seeds: FineParser's two in the
# built-in default's budget, aqa.trained.variant_seeds; lr_schedule: FineParser's code's in paper mode).
TRAIN_OVERRIDES = ("seeds", "epochs", "batch_size", "lr", "weight_decay", "backbone", "lr_schedule")


@dataclass(frozen=True)
class VariantSpec:
    name: str            # as given, e.g. "tsa-dn"
    base: str            # key of params.train.variants, e.g. "tsa"
    mode: str            # dn | nodn
    method: str          # registry method
    model_cfg: dict      # the variant's settings minus `method` and `train`
    train_overrides: dict = field(default_factory=dict)   # the variant's `train:` (TRAIN_OVERRIDES)


def parse_variant(variant: str, params: dict[str, Any]) -> VariantSpec:
    """Resolve "<variant>-<mode>" against params.train.variants and params.train.exemplar_modes."""
    from aqa.models.registry import MODE_SETTINGS

    variants = params["train"]["variants"]
    modes = params["train"]["exemplar_modes"]
    base, sep, mode = variant.rpartition("-")
    if not sep or mode not in modes:
        raise VariantError(f"variant {variant!r}: expected <variant>-<mode> with mode in {modes} "
                         "(params train.exemplar_modes)")
    if base not in variants:
        raise VariantError(f"variant {variant!r}: {base!r} is not in params train.variants ({sorted(variants)})")
    cfg = dict(variants[base])
    method = cfg.pop("method")
    overrides = dict(cfg.pop("train", None) or {})
    unknown = sorted(set(overrides) - set(TRAIN_OVERRIDES))
    if unknown:
        raise VariantError(f"params train.variants.{base}.train: {unknown} cannot be set per variant "
                           f"(allowed: {', '.join(TRAIN_OVERRIDES)})")
    decided = sorted(set(cfg) & MODE_SETTINGS.get(method, frozenset()))
    if decided:
        raise VariantError(f"params train.variants.{base}: {decided} are set by the exemplar mode and the "
                           "training pool (docs/METHODS.md), not in params")
    return VariantSpec(name=variant, base=base, mode=mode, method=method, model_cfg=cfg, train_overrides=overrides)


def model_kwargs(spec: VariantSpec, data: DiveData, pool: np.ndarray) -> dict[str, Any]:
    """The variant's model settings, plus what its exemplar mode and the training pool imply
    (registry.variant_settings: CoRe's group edges, the DD readings of the baselines). The same
    at training and at evaluation, so evaluate rebuilds and checks the same config."""
    from aqa.models.registry import variant_settings

    kwargs = dict(spec.model_cfg)
    if spec.method == "fr_dn":   # the dive-number embedding needs the number of action types
        kwargs.setdefault("num_actions", len(data.action_names))
    if spec.method == "fineparser":   # no mask loss on a dataset without masks (MTL-AQA; docs/METHODS.md)
        kwargs.setdefault("mask_loss", dataset_masks(data))
    pool_dives = data.dives.iloc[np.asarray(pool)]   # the annotation's float64 values, not the tensors' float32
    try:
        implied = variant_settings(spec.method, spec.mode, score=pool_dives["dive_score"].to_numpy(np.float64),
                                   difficulty=pool_dives["difficulty"].to_numpy(np.float64),
                                   action=pool_dives["action_type"].astype(str).to_numpy(), config=kwargs)
    except ValueError as exc:   # e.g. CoRe w/ DN on a pool where no action type has two dives
        raise VariantError(f"{spec.name}: {exc}") from None
    return {**implied, **kwargs}


def dataset_masks(data: DiveData) -> bool:
    """Whether the dataset of `data` has human masks (aqa.data.datasets: FineDiving-HM yes, MTL-AQA no)."""
    from aqa.data.datasets import dataset_spec

    dataset = getattr(data, "dataset", None)   # set by load_data
    if dataset is None:
        raise ValueError("the dives' dataset is unknown (load the data with aqa.train.run.load_data)")
    return dataset_spec(dataset).masks


def variant_cache_keys(spec: VariantSpec, dives_parquet: str | Path) -> tuple[str, ...]:
    """The feature cache's additions the variant's model reads (its `cache_keys`: FineParser's
    mixed4f / sve / masks as its settings need them; () for the other methods)."""
    from aqa.data.datasets import dataset_spec
    from aqa.models.registry import build_model

    if spec.method != "fineparser":
        return ()
    kwargs = {"mask_loss": dataset_spec(dataset_name(dives_parquet)).masks, **spec.model_cfg}
    return tuple(getattr(build_model(spec.method, **kwargs), "cache_keys", ()) or ())


def seed_run(spec: VariantSpec, params: dict[str, Any], seed: int, data: DiveData, pool: np.ndarray) -> SeedRun:
    """One seed's training as params define it (evaluate rebuilds it to check a model's config);
    the variant's `train:` settings replace params.train's."""
    return SeedRun(variant=spec.name, method=spec.method, model_kwargs=model_kwargs(spec, data, pool),
                   mode=spec.mode, seed=seed, train_cfg={**params["train"], **spec.train_overrides},
                   eval_cfg=params["evaluate"])


def dataset_name(dives_parquet: str | Path) -> str:
    """The dataset of a dives table (aqa.data.annotations.dataset_of): the MLflow experiment."""
    from aqa.data.annotations import dataset_of

    return dataset_of(dives_parquet)


def split_rows(data: DiveData, train_cfg: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(training pool, validation, test) row indices; the pool also supplies every exemplar."""
    pool, val = split_validation(data.dives, train_cfg["validation_fraction"], train_cfg["validation_seed"])
    test = data.indices("test")
    if test.size == 0:
        raise AqaError("no dives in the test split of the annotations")
    return pool, val, test


def load_data(train_cfg: dict[str, Any], dives_parquet: str | Path, features_dir: str | Path, device, *,
              frames_root: str | Path | None = None, weights_path: str | Path | None = None,
              cache_keys: tuple[str, ...] = (), masks_root: str | Path | None = None) -> DiveData:
    """The dives as the backbone of params train.backbone reads them: cached features, or (finetune)
    the frames of the cache's protocol (aqa.train.frames; `weights_path` only to train).
    `cache_keys`: the feature cache's additions the variant's batches carry (FineParser's:
    `variant_cache_keys`; on the frames path its masks come from `masks_root`)."""
    if train_cfg["backbone"] == "finetune":
        from aqa.train.frames import load_frame_data

        data = load_frame_data(dives_parquet, features_dir, frames_root, weights_path, device,
                               num_workers=train_cfg["num_workers"], cache_keys=cache_keys, masks_root=masks_root)
    else:
        data = load_dive_data(dives_parquet, features_dir, device, **({"cache_keys": cache_keys} if cache_keys else {}))
    data.dataset = dataset_name(dives_parquet)   # which decides, e.g., FineParser's mask loss
    return data


def train_variant(variant: str, *, features_dir: str | Path, dives_parquet: str | Path, out_dir: str | Path,
                  params: dict[str, Any], tracking_uri: str | None = None,
                  max_epochs: int | None = None, frames_root: str | Path | None = None,
                  weights_path: str | Path | None = None, masks_root: str | Path | None = None,
                  work_dir: str | Path | None = None) -> dict[int, list[dict[str, Any]]]:
    """Train `variant` for each of its seeds (aqa.trained.variant_seeds) into out_dir/seed<k>/ (resumable).

    With `work_dir` (the DVC stage's .aqa/work/<out_dir>, aqa.workdir), the seeds train and
    resume there (started from the last output when there is no work folder), and the work
    folder becomes out_dir once every listed seed is done.

    Returns each seed's per-epoch history. `max_epochs` limits the epochs run in this call.
    Started by torchrun, the processes train together (aqa.train.distributed; docs/TRAINING.md
    "Several GPUs"): process 0 alone writes and tracks.
    With train.backbone finetune, `frames_root` and `weights_path` (the Kinetics I3D) are read too,
    and FineParser's `masks_root`.
    """
    spec = parse_variant(variant, params)
    train_cfg = {**params["train"], **spec.train_overrides}   # the variant's seeds among them
    ranks = distributed.ranks_from_env()
    ranks.check_batch_size(train_cfg["batch_size"], f"variant {variant}")
    work = Path(out_dir if work_dir is None else work_dir)
    if ranks.main:   # the others read the folder only after process 0 has prepared it (distributed.start)
        if work_dir is not None:
            from aqa.workdir import start

            ensure_writable(Path(out_dir).parent)
            start(work, out_dir)
        for seed in train_cfg["seeds"]:       # every output folder before anything is read or replaced
            ensure_writable(work / f"seed{seed}")
    ranks, device = distributed.start(resolve_device(train_cfg["device"]))
    out = _train_seeds(spec, params, dives_parquet, features_dir, work, device, ranks, tracking_uri, max_epochs,
                       frames_root=frames_root, weights_path=weights_path, masks_root=masks_root)
    if work_dir is not None and max_epochs is None and ranks.main:
        from aqa.workdir import publish

        publish(work, out_dir)   # only the listed seeds are left in it (remove_unlisted_seeds)
    distributed.stop(ranks)   # not after a failure: the process exits and torchrun ends the others
    return out


def _train_seeds(spec: VariantSpec, params: dict[str, Any], dives_parquet: str | Path, features_dir: str | Path,
                 out_dir: str | Path, device: torch.device, ranks: distributed.Ranks, tracking_uri: str | None,
                 max_epochs: int | None, *, frames_root: str | Path | None,
                 weights_path: str | Path | None, masks_root: str | Path | None = None
                 ) -> dict[int, list[dict[str, Any]]]:
    variant, train_cfg = spec.name, {**params["train"], **spec.train_overrides}
    if train_cfg["backbone"] == "finetune" and weights_path is None:
        raise VariantError("train.backbone is finetune: training needs the I3D weights (aqa train --weights)")
    data = load_data(train_cfg, dives_parquet, features_dir, device, frames_root=frames_root,
                     weights_path=weights_path, cache_keys=variant_cache_keys(spec, dives_parquet),
                     masks_root=masks_root)
    if needs_step_labels(spec.method) and bool((data.transitions < 0).all()):
        raise VariantError(f"variant {variant!r}: method {spec.method} learns the step transitions, and "
                           f"{dives_parquet} has none (no step labels, e.g. MTL-AQA)")
    pool, val, test = split_rows(data, train_cfg)
    log.info("%s: %d training, %d validation, %d test dives on %s", variant, pool.size, val.size, test.size,
             device)
    if spec.method == "musdl":
        log_masked_judges(data, pool)
    tracker = None
    if ranks.main:   # MLflow is imported by process 0 alone (the others do not track; it takes seconds)
        from aqa.train.tracking import Tracker

        tracker = Tracker(tracking_uri, dataset_name(dives_parquet))
    out = {}
    for seed in train_cfg["seeds"]:
        run = seed_run(spec, params, seed, data, pool)
        run.tags["dvc_stage"] = stage_name(params, "train", dataset_name(dives_parquet), variant)
        if ranks.distributed:
            run.tags["processes"] = str(ranks.world_size)
        out[seed] = train_seed(run, data, pool, val, test, Path(out_dir) / f"seed{seed}", tracker,
                               max_epochs=max_epochs, ranks=ranks, weights_path=weights_path)
    if max_epochs is None and ranks.main:
        remove_unlisted_seeds(out_dir, train_cfg["seeds"])
    return out


def log_masked_judges(data: DiveData, pool: np.ndarray) -> None:
    """Name the pool's judge entries MUSDL leaves out of its loss (outside [0, 10]; D4)."""
    from aqa.models.usdl import out_of_range_judges

    bad = out_of_range_judges(data.judges[pool].cpu(), data.num_judges[pool].cpu())
    for i, j in bad.nonzero().tolist():
        row = int(pool[i])
        log.warning("MUSDL: judge %d of %s is %s, outside [0, 10]: left out of the loss (the other judges "
                    "of the dive train)", j + 1, data.keys[row], num(float(data.judges[row, j])))


def remove_unlisted_seeds(out_dir: str | Path, seeds: list[int]) -> list[Path]:
    """Delete seed folders params no longer lists, once the listed ones are trained.

    In a folder that outlives a run (the stage's work folder, or a model folder trained in place),
    a seed left over from earlier params would otherwise be published or hashed into dvc.lock, so
    the ledger would depend on the folder's history rather than on the current params.
    """
    wanted = {f"seed{s}" for s in seeds}
    removed = []
    for folder in sorted(Path(out_dir).glob("seed*")):
        if folder.is_dir() and folder.name not in wanted and folder.name[4:].isdigit():
            log.info("%s: seed not among the variant's seeds %s, removed", folder, list(seeds))
            shutil.rmtree(folder)
            removed.append(folder)
    return removed
