"""params train.lr_schedule (docs/METHODS.md D5): FineParser's code's per-batch warm-up + cosine
(FINEPARSER.md 4.2) beside the constant lr. Its values by hand, per Adam group, the params checks'
one-line errors, the lr every optimiser step of a real training sees (resumed or not), and the
constant schedule recorded as before the key existed."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from mlflow import MlflowClient
from torch.optim.optimizer import register_optimizer_step_pre_hook

from aqa.params import ParamsError, validate_params
from aqa.provenance import evaluate_params, training_section
from aqa.train.checkpoint import load_checkpoint
from aqa.train.lr_schedule import LrSchedule, ScheduleError, lr_at
from aqa.train.run import train_variant
from train_helpers import small_train_params, sqlite_store, tiny_dataset

CODE = {"name": "warmup_cosine", "warmup_epochs": 5, "cosine_epochs": 400, "lr_min": 1e-4}   # the code's


@pytest.mark.parametrize("t, expected", [
    (0, 1e-4),                                                         # the first batch: the warm-up's start
    (25, 1e-4 + 25 * 9e-4 / 50),                                       # half-way up: 5.5e-4
    (49, 1e-4 + 49 * 9e-4 / 50),                                       # the warm-up's last batch
    (50, 1e-4 + 0.5 * 9e-4 * (1 + math.cos(math.pi * 50 / 4000))),    # the cosine counts t from 0, not from 50
    (2000, 1e-4 + 0.5 * 9e-4),                                         # cosine mid: cos(pi / 2) = 0
    (3999, 1e-4 + 0.5 * 9e-4 * (1 + math.cos(math.pi * 3999 / 4000))),
    (4000, 1e-4),                                                      # T: lr_min
    (4001, 1e-4), (10 ** 6, 1e-4),                                     # past T: stays at lr_min (no restart)
])
def test_the_codes_schedule_by_hand(t, expected):
    # 10 batches an epoch: T_w = 50, T = 4000; base 1e-3 as the code's heads
    assert lr_at(1e-3, t, 10, CODE) == pytest.approx(expected, rel=1e-12, abs=0)


def test_a_group_at_lr_min_stays_there_and_constant_is_the_base():
    assert {lr_at(1e-4, t, 10, CODE) for t in (0, 7, 50, 2000, 4000, 9999)} == {1e-4}   # the TAP I3D group
    assert {lr_at(3e-3, t, 10, {"name": "constant"}) for t in (0, 50, 10 ** 6)} == {3e-3}


def test_without_warm_up_the_first_batch_runs_at_the_base():
    cfg = {**CODE, "warmup_epochs": 0}
    assert lr_at(1e-3, 0, 10, cfg) == 1e-3
    assert lr_at(1e-3, 2000, 10, cfg) == pytest.approx(5.5e-4, rel=1e-12)


def _optimizer(*lrs):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr, "name": f"g{i}"} for i, lr in enumerate(lrs)]
    return torch.optim.Adam(groups)


def test_every_group_follows_its_own_base():
    opt = _optimizer(1e-3, 1e-4, 1e-2)
    schedule = LrSchedule(CODE, opt, n_iter=10)
    for t in (0, 25, 2000):
        schedule.apply(opt, t)
        assert [g["lr"] for g in opt.param_groups] == [lr_at(b, t, 10, CODE) for b in (1e-3, 1e-4, 1e-2)]
    assert opt.param_groups[0]["lr"] == pytest.approx(5.5e-4) and opt.param_groups[1]["lr"] == 1e-4
    assert schedule.last_of_epoch(0) == {f"g{i}": lr_at(b, 9, 10, CODE) for i, b in enumerate((1e-3, 1e-4, 1e-2))}


def test_a_group_below_lr_min_is_refused():
    with pytest.raises(ScheduleError, match=r"^train.lr_schedule.lr_min = 0.0001 is above the base lr 5e-05 of the "
                                            r"optimiser group 'g1'"):
        LrSchedule(CODE, _optimizer(1e-3, 5e-5), n_iter=10)


# --------------------------------------------------------------------------- params


def _check(params):
    with pytest.raises(ParamsError) as err:
        validate_params(params, "params.yaml")
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("schedule, message", [
    ({**CODE, "lr_min": 2e-3}, "train.lr_schedule.lr_min = 0.002 is above variant fr's train.lr = 0.001"),
    ({**CODE, "warmup_epochs": -1}, "train.lr_schedule.warmup_epochs: -1 is less than the minimum of 0"),
    ({**CODE, "cosine_epochs": 0}, "train.lr_schedule.cosine_epochs: 0 is less than the minimum of 1"),
    ({**CODE, "warmup_epochs": 400}, "train.lr_schedule: warmup_epochs (400) must be below cosine_epochs (400)"),
    ({"name": "warmup_cosine", "warmup_epochs": 5}, "train.lr_schedule: name warmup_cosine needs cosine_epochs, lr_min"),
    ({"name": "constant", "lr_min": 1e-4}, "train.lr_schedule: name constant takes no other keys, got ['lr_min']"),
    ({"name": "cosine"}, "train.lr_schedule.name: 'cosine' is not one of"),
])
def test_params_refuse_a_bad_schedule_in_one_line(repo_params, schedule, message):
    p = copy.deepcopy(repo_params)
    p["train"]["lr_schedule"] = schedule
    assert message in _check(p)


def test_params_check_a_variants_own_schedule_against_its_groups(repo_params):
    p = copy.deepcopy(repo_params)
    p["train"]["variants"]["fineparser"]["train"]["lr_schedule"] = dict(CODE)
    validate_params(p)                                        # lr 1e-3 >= lr_min (lr_backbone unused: cached)
    p["train"]["variants"]["fr"]["train"] = {"lr_schedule": {"name": "warmup_cosine", "lr_min": 0.0}}
    assert "train.variants.fr.train.lr_schedule: name warmup_cosine needs warmup_epochs, cosine_epochs" in _check(p)
    del p["train"]["variants"]["fr"]["train"]
    p["train"]["variants"]["fineparser"]["sap"] = {"head_lr_mult": 0.05}
    assert "train.variants.fineparser.train.lr_schedule.lr_min = 0.0001 is above variant fineparser's " \
           "train.lr x sap.head_lr_mult 0.05 = 5e-05" in _check(p)
    p["train"]["variants"]["fineparser"]["train"].update(backbone="finetune")
    p["train"]["variants"]["fineparser"]["sap"] = {"tier": "T1"}
    p["train"]["lr_backbone"] = 1e-5
    assert "train.lr_backbone = 1e-05" in _check(p)          # I3D's group in the loop


def test_the_constant_schedule_is_recorded_as_before_the_key_existed(repo_params):
    p = copy.deepcopy(repo_params)
    assert p["train"]["lr_schedule"] == {"name": "constant"}
    without = copy.deepcopy(p)
    del without["train"]["lr_schedule"]
    assert training_section(p["train"]) == training_section(without["train"])
    assert evaluate_params(p, "tsa", "dn", "finediving") == evaluate_params(without, "tsa", "dn", "finediving")
    p["train"]["variants"]["fineparser"]["train"]["lr_schedule"] = dict(CODE)
    assert evaluate_params(p, "fineparser", "dn", "finediving")["train"]["lr_schedule"] == CODE
    assert "lr_schedule" not in evaluate_params(p, "tsa", "dn", "finediving")["train"]


# --------------------------------------------------------------------------- a real training

SHORT = {"name": "warmup_cosine", "warmup_epochs": 1, "cosine_epochs": 3, "lr_min": 1e-4}


@pytest.fixture()
def tiny(tmp_path, tiny_params):
    dives, cache, _ = tiny_dataset(tmp_path, 24)
    return dives, cache, small_train_params(tiny_params, lr_schedule=dict(SHORT)), sqlite_store(tmp_path)


def _train(tiny, out, **kw):
    dives, cache, params, uri = tiny
    return train_variant("tsa-dn", features_dir=cache, dives_parquet=dives, out_dir=out, params=params,
                         tracking_uri=uri, **kw)


class StepLrs:
    """Every optimiser step's group lrs (torch's global step pre-hook, on the real Adam of the loop)."""

    def __enter__(self):
        self.seen = []
        self.handle = register_optimizer_step_pre_hook(
            lambda opt, args, kwargs: self.seen.append([g["lr"] for g in opt.param_groups]))
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_every_step_of_a_resumed_training_runs_at_the_lr_of_its_batch(tiny, tmp_path):
    """Killed after epoch 0 and resumed: the same lr at every step as uninterrupted, the lr of the
    formula for the global batch index, and the same weights, history and MLflow lr metrics."""
    with StepLrs() as full:
        history = _train(tiny, tmp_path / "full")[0]
    n_iter = len(full.seen) // 3
    assert n_iter * 3 == len(full.seen) and n_iter >= 2
    assert [lrs[0] for lrs in full.seen] == [lr_at(1e-3, t, n_iter, SHORT) for t in range(3 * n_iter)]
    assert full.seen[0][0] == 1e-4 and full.seen[n_iter][0] < 1e-3   # warm-up from lr_min; the cosine from t = 0
    with StepLrs() as killed:
        _train(tiny, tmp_path / "killed", max_epochs=1)
    with StepLrs() as resumed:
        again = _train(tiny, tmp_path / "killed")[0]
    assert killed.seen + resumed.seen == full.seen
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]   # noqa: E731
    assert strip(again) == strip(history)
    assert [h["lr"] for h in history] == [{"heads": lr_at(1e-3, (e + 1) * n_iter - 1, n_iter, SHORT)}
                                          for e in range(3)]
    assert (tmp_path / "killed/seed0/checkpoint.pt").read_bytes() == (tmp_path / "full/seed0/checkpoint.pt").read_bytes()
    assert load_checkpoint(tmp_path / "full/seed0/checkpoint.pt")["config"]["train"]["lr_schedule"] == SHORT
    run_id = json.loads((tmp_path / "full/seed0/run.json").read_text())["mlflow_run_id"]
    logged = MlflowClient(tiny[3]).get_metric_history(run_id, "lr_heads")
    assert [m.value for m in sorted(logged, key=lambda m: m.step)] == [h["lr"]["heads"] for h in history]


def test_a_constant_schedule_trains_as_without_the_key(tiny, tmp_path):
    """{name: constant} and no key at all (main before the option): the same bytes; no lr in the history."""
    dives, cache, params, uri = tiny
    params["train"]["lr_schedule"] = {"name": "constant"}
    with StepLrs() as steps:
        history = _train((dives, cache, params, uri), tmp_path / "constant")[0]
    assert {lr for lrs in steps.seen for lr in lrs} == {1e-3}
    del params["train"]["lr_schedule"]
    _train((dives, cache, params, uri), tmp_path / "absent")
    for name in ("checkpoint.pt", "best_val.pt", "history.json"):
        assert (tmp_path / "constant/seed0" / name).read_bytes() == (tmp_path / "absent/seed0" / name).read_bytes()
    assert all("lr" not in h for h in history)
