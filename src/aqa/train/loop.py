"""The training loop of one (variant, seed): epochs, per-epoch evaluation, checkpoints, resume.

Everything random in an epoch comes from generators seeded by (seed, epoch), and the model and
optimiser state are restored from the checkpoint, so a killed run resumed from its last
checkpoint ends with the same weights and metrics as an uninterrupted one (on CPU). A checkpoint
is resumed only when it was made from the current inputs (aqa.train.resume).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from aqa.evaluate.direct import is_pairwise, prediction_metrics, predict_rows
from aqa.evaluate.sap_masks import mask_scores, predicts_masks
from aqa.evaluate.voting import amp_dtype, autocast_for, evaluate_rows, shared_encodings
from aqa.io import write_json_atomic
from aqa.logs import num
from aqa.models.batchnorm import set_batchnorm_mode
from aqa.provenance import sha256_json, training_section
from aqa.train.checkpoint import (ensure_writable, git_commit, load_checkpoint, read_run_info, rng_states,
                                  save_checkpoint, seed_everything, set_rng_states, write_run_info)
from aqa.train.data import DiveData, uses_maps
from aqa.train.distributed import SINGLE, Ranks
from aqa.train.exemplars import epoch_rng, sample_train_exemplars
from aqa.train.lr_schedule import LrSchedule, is_constant
from aqa.train.resume import BEST, CHECKPOINT, HISTORY, resumable_checkpoint, training_inputs
from aqa.train.sap_init import init_sap, needs_kinetics

if TYPE_CHECKING:   # MLflow is imported by process 0 alone (the others do not track; it takes seconds)
    from aqa.train.tracking import Tracker

log = logging.getLogger(__name__)


@dataclass
class SeedRun:
    """What one (variant, seed) training needs besides the data."""

    variant: str                 # "<variant>-<mode>", e.g. "tsa-dn"
    method: str                  # registry method
    model_kwargs: dict[str, Any]  # passed to build_model
    mode: str                    # exemplar mode, dn | nodn
    seed: int
    train_cfg: dict[str, Any]    # params["train"]
    eval_cfg: dict[str, Any]     # params["evaluate"]
    tags: dict[str, str] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        """The resolved config stored in checkpoints: exactly the params this training reads
        (it rebuilds the model and its data split; its digest is the provenance's `params`)."""
        return {"variant": self.variant, "method": self.method, "model_kwargs": dict(self.model_kwargs),
                "mode": self.mode, "seed": self.seed, "train": training_section(self.train_cfg),
                "evaluate": dict(self.eval_cfg)}


def resolve_device(name: str) -> torch.device:
    """The device of params train.device; on CPU also fixes torch's thread count (see below)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("params train.device is 'cuda' but no CUDA device is available")
    if name == "cpu":
        # One intra-op thread unless OMP_NUM_THREADS says otherwise (Snakemake sets it per job):
        # the thread count changes the last bits of the results, jobs run side by side, and two
        # threads beside a busy process were 4.5x slower; alone, 2 threads are 1.6x faster
        # (docs/TRAINING.md).
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    return torch.device(name)


def build(config: dict[str, Any], device: torch.device, data: DiveData | None = None) -> torch.nn.Module:
    """The model of a config; with train.backbone finetune, its backbone is the I3D of `data`
    (aqa.train.frames.FrameData: the cache's protocol, the verified Kinetics weights)."""
    from aqa.models.registry import build_model

    model = build_model(config["method"], **config["model_kwargs"])
    if config["train"].get("backbone", "cached") == "finetune":
        if not callable(getattr(data, "backbone", None)):
            raise TypeError("train.backbone finetune needs the frames (aqa.train.frames.FrameData) to build its I3D")
        model.backbone = data.backbone(config["train"])
        data.check_model(model)   # FineParser's SAP from frames: the same snippets and normalisation
    return model.to(device)


def make_optimizer(model: torch.nn.Module, train_cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """Adam; lr for the heads, lr_backbone for a backbone with trainable parameters (none when cached).
    A model with `lr_groups()` (FineParser: sap, psnet, sve, finereg; FINEPARSER.md 4.1) has one
    named group per part at lr (times its `lr_scales()` entry, if any: FineParser's sap_head with
    the option sap.head_lr_mult), and its remaining trainable heads (if any) in a group "heads"."""
    backbone = getattr(model, "backbone", None)
    bb = [p for p in backbone.parameters() if p.requires_grad] if backbone is not None else []
    bb_ids = {id(p) for p in bb}
    heads = [p for p in model.parameters() if p.requires_grad and id(p) not in bb_ids]
    named = model.lr_groups() if callable(getattr(model, "lr_groups", None)) else {}
    scales = model.lr_scales() if callable(getattr(model, "lr_scales", None)) else {}
    groups = [{"params": ps, "lr": train_cfg["lr"] * scales.get(name, 1.0), "name": name}
              for name, ps in named.items()]
    grouped = {id(p) for ps in named.values() for p in ps}
    rest = [p for p in heads if id(p) not in grouped]
    if rest or not groups:
        groups.insert(0, {"params": rest, "lr": train_cfg["lr"], "name": "heads"})
    if bb:
        groups.append({"params": bb, "lr": train_cfg["lr_backbone"], "name": "backbone"})
    return torch.optim.Adam(groups, weight_decay=train_cfg["weight_decay"])


def lr_schedule(train_cfg: dict[str, Any], optimizer: torch.optim.Optimizer, pool_size: int,
                ranks: Ranks = SINGLE) -> LrSchedule | None:
    """The schedule of params train.lr_schedule over this optimiser's groups (None: constant)."""
    cfg = train_cfg.get("lr_schedule")
    if is_constant(cfg):
        return None
    return LrSchedule(cfg, optimizer, len(_batches(pool_size, train_cfg["batch_size"], ranks.min_batch)))


def set_determinism(seed: int, device: torch.device = torch.device("cpu"), compiled: bool = False) -> None:
    seed_everything(seed)
    deterministic_algorithms(compiled)
    # cuDNN autotuning on CUDA (fast convolutions for I3D; CUDA results may differ in the last
    # bits anyway); nothing to tune on CPU
    torch.backends.cudnn.benchmark = device.type == "cuda"


def deterministic_algorithms(compiled: bool) -> None:
    """torch.use_deterministic_algorithms(True, warn_only=True), whose first call imports all of
    torch._dynamo (~1 s a process) to set Inductor's flag. Its other half, the switch every kernel
    reads, is set alone unless something compiles (`compiled`) or Inductor is loaded already."""
    if compiled or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(True, warn_only=True)


def _batches(n: int, size: int, min_size: int = 2) -> list[slice]:
    """Batch slices; a trailing batch smaller than `min_size` joins the previous (BatchNorm needs
    two samples; under torchrun each process needs one: Ranks.min_batch)."""
    starts = list(range(0, n, size))
    if len(starts) > 1 and n - starts[-1] < min_size:
        starts.pop()
    return [slice(s, e) for s, e in zip(starts, starts[1:] + [n])]


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    return x


def _better(value: float | None, best: float | None) -> bool:
    if best is None:
        return True
    return value is not None and not math.isnan(value) and value > best


def train_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                data: DiveData, pool_rows: np.ndarray, run: SeedRun, epoch: int, *, ranks: Ranks = SINGLE,
                net: torch.nn.Module | None = None, schedule: LrSchedule | None = None) -> dict[str, float]:
    """One pass over the training pool; returns the mean loss parts.

    Pairwise models: each query with one exemplar drawn for the epoch. Direct models
    (`model.pairwise` False): each dive on its own, no exemplar drawn. Under torchrun every
    process draws the same epoch and trains on its share of each batch (aqa.train.distributed)
    through `net`, the DDP wrapper of `model`. `schedule` (train.lr_schedule other than constant)
    sets the groups' lr before each batch.
    """
    cfg = run.train_cfg
    rng = epoch_rng(run.seed, epoch)
    # dropout etc.: fixed per epoch, resume-proof; per process under torchrun
    torch.manual_seed(ranks.torch_seed(int(rng.integers(2**62))))
    feed = dict(ranks=ranks, net=model if net is None else net, schedule=schedule, epoch=epoch)
    n = pool_rows.size
    order = rng.permutation(n)
    views = data.views if cfg["use_flip_view"] else 1
    maps = uses_maps(model)
    # the frames path augments each load by draws from (seed, epoch, the query's dive, role)
    aug = {"with_maps": maps, "seed": run.seed, "epoch": epoch}
    if not is_pairwise(model):
        view_q = rng.integers(0, views, size=n)
        return _run_batches(model, optimizer, scaler, data, order, cfg, lambda sel: (
            data.request(pool_rows[sel], view_q[sel], role="query", **aug),), **feed)
    transitions = "gt" if epoch / cfg["epochs"] <= cfg["prob_tas_threshold"] else "pred"
    actions = data.action.cpu().numpy()[pool_rows]
    exemplar = sample_train_exemplars(actions, run.mode, rng)
    view_q, view_e = rng.integers(0, views, size=n), rng.integers(0, views, size=n)
    return _run_batches(model, optimizer, scaler, data, order, cfg, lambda sel: (
        data.request(pool_rows[sel], view_q[sel], role="query", **aug),
        data.request(pool_rows[exemplar[sel]], view_e[sel], role="exemplar", items=pool_rows[sel], **aug)),
        transitions=transitions, **feed)


def _run_batches(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                 data: DiveData, order: np.ndarray, cfg: dict[str, Any], batches_of, *, ranks: Ranks,
                 net: torch.nn.Module, schedule: LrSchedule | None = None, epoch: int = 0,
                 **forward_kw) -> dict[str, float]:
    """Optimise over `order` in batches of cfg.batch_size: `batches_of(sel)` gives the loads of the
    model's input batches (query[, exemplar]), which `data.fetch` turns into batch dicts; the loss
    is `model.loss(net(*batches), *batches)`. Under torchrun `sel` is this process's share of the
    batch, and the loss sums are over all processes. With a `schedule`, batch i of `epoch` runs at
    the lr of batch epoch * n_iter + i of the training."""
    n = order.size
    net.train()
    sums: dict[str, float] = defaultdict(float)
    slices = _batches(n, cfg["batch_size"], ranks.min_batch)
    shares = [ranks.shard(order[sl]) for sl in slices]
    if schedule is not None and len(slices) != schedule.n_iter:
        raise RuntimeError(f"an epoch of {len(slices)} batches, the lr schedule counts {schedule.n_iter}")
    for i, (sl, sel, batches) in enumerate(zip(slices, shares, data.fetch(batches_of(s) for s in shares))):
        if schedule is not None:
            schedule.apply(optimizer, epoch * schedule.n_iter + i)
        optimizer.zero_grad(set_to_none=True)
        with autocast_for(data.device, cfg["amp"]):
            out = net(*batches, **forward_kw)
            total, parts = model.loss(out, *batches)
        # DDP averages the processes' gradients: each loss weighted by its share of the batch
        weighted = total * ranks.loss_weight(sel.size, sl.stop - sl.start) if ranks.distributed else total
        scaler.scale(weighted).backward()
        scaler.step(optimizer)
        scaler.update()
        sums["loss"] += float(total.detach()) * sel.size
        for k, v in parts.items():
            sums[f"loss_{k}"] += float(v.detach() if torch.is_tensor(v) else v) * sel.size
    return {k: v / n for k, v in ranks.sum(sums).items()}


def evaluate_epoch(model: torch.nn.Module, data: DiveData, pool_rows: np.ndarray, val_rows: np.ndarray,
                   test_rows: np.ndarray, run: SeedRun) -> dict[str, dict[str, float]]:
    if not is_pairwise(model):   # each dive predicted on its own: no exemplars
        scores = predict_rows(model, data, np.concatenate([val_rows, test_rows]),
                              batch_size=run.eval_cfg["batch_size"], amp=run.train_cfg["amp"])
        return {"val": prediction_metrics(scores[:val_rows.size], data, val_rows) if val_rows.size else {},
                "test": prediction_metrics(scores[val_rows.size:], data, test_rows)}
    ev = dict(mode=run.mode, num_exemplars=run.eval_cfg["num_exemplars"], seed=run.eval_cfg["exemplar_seed"],
              batch_size=run.eval_cfg["batch_size"], amp=run.train_cfg["amp"])
    # every dive encoded once for the three votes (the pool serves all of them); the "gt" cut
    # reuses the PSNet work of the "pred" one
    enc = shared_encodings(model, data, np.concatenate([pool_rows, val_rows, test_rows]),
                           batch_size=ev["batch_size"], amp=ev["amp"])
    out = {"val": evaluate_rows(model, data, val_rows, pool_rows, encoded=enc["pred"], **ev)[0]
           if val_rows.size else {},
           "test": evaluate_rows(model, data, test_rows, pool_rows, encoded=enc["pred"], **ev)[0]}
    if predicts_masks(model):     # FineParser's SAP: its test masks per epoch (the paper protocol's best)
        out["test"].update(mask_scores(model, data, test_rows, batch_size=ev["batch_size"])[0])
    if "aiou50" in out["test"]:   # the method predicts transitions: also test with ground truth (TSA-dagger)
        out["test_gt"] = evaluate_rows(model, data, test_rows, pool_rows, transitions="gt", encoded=enc["gt"],
                                       **ev)[0]
    return out


def train_seed(run: SeedRun, data: DiveData, pool_rows: np.ndarray, val_rows: np.ndarray,
               test_rows: np.ndarray, seed_dir: str | Path, tracker: Tracker | None = None, *,
               max_epochs: int | None = None, ranks: Ranks = SINGLE,
               weights_path: str | Path | None = None) -> list[dict[str, Any]]:
    """Train (or resume, or skip when finished) one seed; return its per-epoch history.

    Writes seed_dir/{checkpoint.pt, history.json, best_val.pt} (DVC-hashed, the same bytes for
    the same inputs) and the side file run.json (MLflow run id, git commit, seconds per epoch).
    `max_epochs` stops after that many epochs in this call (a stand-in for a killed job; the
    next call resumes). Under torchrun (`ranks`) every process trains its share; process 0 alone
    evaluates and writes (the others get no tracker), and every process returns its history.
    A model with a SAP (FineParser) starts its SAP trunk from the Kinetics I3D at `weights_path`
    (verified against fetch_i3d's manifest); a resumed one gets it back from the checkpoint.
    """
    seed_dir = Path(seed_dir)
    ensure_writable(seed_dir)
    config = _nan_to_none(run.config())
    inputs = training_inputs(config, data.annotations_digest, data.fingerprint)
    device = data.device
    set_determinism(run.seed, device, compiled=bool(run.train_cfg.get("compile")))
    model = build(config, device, data)
    set_batchnorm_mode(model, run.train_cfg["batchnorm"], distributed=ranks.distributed)
    optimizer = make_optimizer(model, run.train_cfg)
    schedule = lr_schedule(run.train_cfg, optimizer, pool_rows.size, ranks)   # the bases: before any resume
    # loss scaling only for float16 (bfloat16 has float32's range)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype(device, run.train_cfg["amp"]) == torch.float16)
    history: list[dict[str, Any]] = []
    start = 0
    info = {"made_from": sha256_json(inputs), "mlflow_run_id": None, "seconds": []}
    state = resumable_checkpoint(seed_dir, config, inputs, device, f"{run.variant} seed {run.seed}")
    ranks.agree(state and (state["epoch"], bool(state.get("finished"))), "the checkpoint's (epoch, finished)")
    if state is None and needs_kinetics(model):
        init_sap(model, weights_path, f"variant {run.variant}")
    if state is not None:
        history, start = state["history"], state["epoch"]
        if state.get("finished"):
            log.info("%s seed %d: finished (%d epochs), skipped", run.variant, run.seed, start)
            return history
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        set_rng_states(state["rng"])
        log.info("%s seed %d: resuming after epoch %d", run.variant, run.seed, start)
        previous = read_run_info(seed_dir) if ranks.main else {}
        if previous.get("made_from") == info["made_from"]:   # the side file of this very training
            info = {**info, **previous}
            if info.get("processes", 1) != ranks.world_size:
                log.warning("%s seed %d: resumed in %d processes, begun in %d (results differ in the last "
                            "bits; with train.batchnorm joint each process normalises other rows)", run.variant,
                            run.seed, ranks.world_size, info.get("processes", 1))
    if ranks.distributed:
        info["processes"] = ranks.world_size
    else:                   # one process now (the side file of a run begun under torchrun says more)
        info.pop("processes", None)
    net = ranks.wrap(model, device)
    if ranks.main:
        _open_run(run, config, data, tracker, seed_dir, info)
    run_id = info["mlflow_run_id"]
    provenance = dict(sorted(inputs.items()))
    epochs = run.train_cfg["epochs"]
    best = max((h["val"].get("rho") for h in history if h["val"].get("rho") is not None), default=None)
    stop = epochs if max_epochs is None else min(epochs, start + max_epochs)
    for epoch in tqdm(range(start, stop), desc=f"{run.variant} seed {run.seed}", initial=start, total=epochs,
                      disable=not ranks.main):
        t0 = time.perf_counter()
        losses = train_epoch(model, optimizer, scaler, data, pool_rows, run, epoch, ranks=ranks, net=net,
                             schedule=schedule)
        if not ranks.main:      # process 0 evaluates and writes; the others wait at the next step
            continue
        t1 = time.perf_counter()
        metrics = evaluate_epoch(model, data, pool_rows, val_rows, test_rows, run)
        seconds = {"epoch": epoch, "train": t1 - t0, "eval": time.perf_counter() - t1}
        record = _nan_to_none({"epoch": epoch, "train": losses, **metrics})
        if schedule is not None:   # each group's lr at the epoch's last batch (none when constant, as before)
            record["lr"] = schedule.last_of_epoch(epoch)
        history.append(record)
        rho = record["val"].get("rho") if val_rows.size else None
        if not val_rows.size or _better(rho, best):
            best = rho
            save_checkpoint(seed_dir / BEST, {
                "model": model.state_dict(), "config": config, "epoch": epoch + 1, "val": record["val"],
                "provenance": provenance})
        write_json_atomic(seed_dir / HISTORY, history)
        finished = epoch + 1 == epochs
        # `epoch` counts completed epochs: the loop restarts at this index.
        save_checkpoint(seed_dir / CHECKPOINT, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "rng": rng_states(), "epoch": epoch + 1, "history": history, "config": config,
            "provenance": provenance, "finished": finished})
        info["seconds"] = [s for s in info["seconds"] if s["epoch"] < epoch] + [seconds]
        write_run_info(seed_dir, info)
        if tracker is not None:
            tracker.log_metrics(run_id, _epoch_metrics(record, seconds), step=epoch)
        log.info("%s seed %d epoch %d: loss %s, val rho %s, test rho %s", run.variant, run.seed, epoch,
                 num(losses.get("loss", float("nan"))), num(record["val"].get("rho")), num(record["test"].get("rho")))
        if finished and tracker is not None:
            _finish_run(tracker, run_id, history, seed_dir, data, test_rows)
    return ranks.broadcast(history)


def _open_run(run: SeedRun, config: dict[str, Any], data: DiveData, tracker: Tracker | None, seed_dir: Path,
              info: dict[str, Any]) -> None:
    """Start (or continue, when `info` names one) the seed's MLflow run, a child of the variant's
    run; record it in run.json before the first epoch, so that a killed job's resume finds it."""
    info["git_commit"] = git_commit()
    # train_variant names the real DVC stage in run.tags (train_dn@fineparser-dn; aqa.trained.stage_name)
    tags = {"dvc_stage": f"train@{run.variant}", "feature_fingerprint": data.fingerprint,
            "annotations_sha256": data.annotations_digest, "variant": run.variant, "seed": str(run.seed),
            "method": run.method, "exemplar_mode": run.mode, **run.tags}
    if tracker is not None:
        from aqa.train.tracking import ROLE, source_tags

        source = source_tags(f"aqa train {run.variant}")
        parent = tracker.variant_run(run.variant, {"method": run.method, "exemplar_mode": run.mode, **source})
        previous_id = info["mlflow_run_id"]
        info["mlflow_run_id"] = tracker.start(f"{run.variant}-seed{run.seed}", params=_tracked_params(config),
                                              tags={**tags, **source, ROLE: "train"}, run_id=previous_id,
                                              parent_run_id=parent)
        if info["mlflow_run_id"] != previous_id:
            write_json_atomic(seed_dir / "config.json", config)
            tracker.log_artifact(info["mlflow_run_id"], seed_dir / "config.json")
    write_run_info(seed_dir, info)


def _tracked_params(config: dict[str, Any]) -> dict[str, Any]:
    return {"variant": config["variant"], "method": config["method"], "mode": config["mode"],
            "seed": config["seed"], "model": config["model_kwargs"], "train": config["train"],
            "evaluate": config["evaluate"]}


def _epoch_metrics(record: dict[str, Any], seconds: dict[str, float]) -> dict[str, float]:
    out = {f"train_{k}": v for k, v in record["train"].items()}
    out.update({f"lr_{k}": v for k, v in record.get("lr", {}).items()})
    for split in ("val", "test", "test_gt"):
        out.update({f"{split}_{k}": v for k, v in record.get(split, {}).items()})
    out.update({f"seconds_{k}": v for k, v in seconds.items() if k != "epoch"})
    return out


def _finish_run(tracker: Tracker, run_id: str, history: list[dict[str, Any]], seed_dir: Path,
                data: DiveData, rows: np.ndarray) -> None:
    """Final metrics (the best-validation epoch's, as the honest protocol picks it), the history,
    and best_val.pt as the run's MLflow model (once per seed; its signature from a batch of `rows`)."""
    from aqa.train.mlflow_model import log_seed_model

    with_val = [h for h in history if h["val"].get("rho") is not None]
    pick = max(with_val, key=lambda h: h["val"]["rho"]) if with_val else history[-1]
    final = {f"final_val_{k}": v for k, v in pick["val"].items()}
    final.update({f"final_test_{k}": v for k, v in pick["test"].items()})
    final["best_epoch"] = pick["epoch"]
    tracker.log_metrics(run_id, final, step=len(history))
    tracker.log_artifact(run_id, seed_dir / HISTORY)
    best = load_checkpoint(seed_dir / BEST, map_location=data.device)
    model = build(best["config"], data.device, data)
    model.load_state_dict(best["model"])
    log_seed_model(tracker, run_id, model, data, rows)
    tracker.finish(run_id)
