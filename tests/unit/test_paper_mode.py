"""aqa.paper: params.yaml + the paper overlay (+ --set) -> validated params and the `dvc exp run
--set-param` arguments, which DVC's own override code turns back into exactly those params."""

from __future__ import annotations

import copy
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aqa.paper import OverlayError, hydra_value, parse_set, read_overlay, resolve, set_param_args
from aqa.params import read_yaml
from aqa.report.tables import both_protocols, table3

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "params" / "paper.yaml"
AQA = Path(sys.executable).with_name("aqa")


def test_the_overlay_sets_the_references_training_on_the_projects_params(repo_params):
    overrides, merged = resolve(repo_params, read_overlay(OVERLAY), [])
    train = merged["train"]
    assert train["backbone"] == "finetune" and train["batchnorm"] == "split"   # the reference's 2-GPU BatchNorm
    assert (train["epochs"], train["batch_size"], train["lr"], train["lr_backbone"], train["weight_decay"]) == \
        (200, 8, 1e-3, 1e-4, 0.0)
    assert train["validation_fraction"] == 0 and train["seeds"] == [0] and train["prob_tas_threshold"] == 0.25
    assert merged["evaluate"]["num_exemplars"] == 10
    # the baselines' sources' epochs, their other settings kept
    epochs = {v: train["variants"][v]["train"]["epochs"] for v in ("i3d_mlp", "usdl", "musdl", "core")}
    assert epochs == {"i3d_mlp": 100, "usdl": 100, "musdl": 100, "core": 200}
    assert train["variants"]["core"]["train"]["batch_size"] == repo_params["train"]["variants"]["core"]["train"][
        "batch_size"]
    # data and everything the overlay does not name stay as params.yaml has them
    for section in ("datasets", "synthesize_videos", "extract_frames", "extract_features", "make_report"):
        assert merged[section] == repo_params[section]
    assert set(overrides) == {"train.backbone", "train.seeds", "train.epochs", "train.batch_size", "train.lr",
                              "train.lr_backbone", "train.weight_decay", "train.prob_tas_threshold",
                              "train.validation_fraction", "train.batchnorm", "evaluate.num_exemplars"} | {
        f"train.variants.{v}.train.epochs" for v in epochs} | {
        "train.variants.fineparser.train.epochs", "train.variants.fineparser.train.seeds",
        "train.variants.fineparser.sap.tier"} | {
        f"train.variants.fineparser.train.lr_schedule.{k}" for k in ("name", "warmup_epochs", "cosine_epochs",
                                                                      "lr_min")}
    # FineParser's main model, whose own epochs and seeds fit the default's budget: its code's 400 and one
    # seed, its code's per-batch warm-up + cosine (FINEPARSER.md 4.2); its SAP's whole I3D from the
    # frames (tier T1), as the code
    assert train["variants"]["fineparser"]["train"] == {"epochs": 400, "seeds": [0], "lr_schedule": {
        "name": "warmup_cosine", "warmup_epochs": 5, "cosine_epochs": 400, "lr_min": 1e-4}}
    assert train["lr_schedule"] == {"name": "constant"}   # the other variants keep the constant lr
    assert train["variants"]["fineparser"]["sap"] == {"tier": "T1"}


def test_set_items_win_and_may_add_a_variants_own_setting(repo_params):
    # the cached backbone takes FineParser back to T2 (T1 reads the frames: aqa.params refuses it alone)
    sets = [parse_set(s) for s in ("train.epochs=1", "train.backbone=cached", "train.variants.fr.train.epochs=3",
                                   "train.lr_backbone=1e-5", "train.variants.fineparser.sap.tier=T2")]
    overrides, merged = resolve(repo_params, read_overlay(OVERLAY), sets)
    assert merged["train"]["epochs"] == 1 and merged["train"]["backbone"] == "cached"
    assert merged["train"]["variants"]["fr"] == {"method": "fr", "train": {"epochs": 3}}
    assert merged["train"]["lr_backbone"] == 1e-5 and isinstance(merged["train"]["lr_backbone"], float)
    assert overrides["train.epochs"] == 1


def test_a_variant_params_do_not_train_is_left_out_of_the_overlay(repo_params):
    p = copy.deepcopy(repo_params)
    del p["train"]["variants"]["core"]
    p["datasets"]["variants"] = {"finediving": ["fr", "tsa"], "mtl_aqa": ["i3d_mlp"]}
    p["datasets"]["dn_only"] = {"finediving": [], "mtl_aqa": []}
    overrides, merged = resolve(p, read_overlay(OVERLAY), [])
    assert "core" not in merged["train"]["variants"]
    assert not any(k.startswith("train.variants.core") for k in overrides)


@pytest.mark.parametrize("sets, overlay, message", [
    (["train.epoch=1"], None, "--set train.epoch: not a key of params.yaml"),
    (["train.epochs=0"], None, "params.yaml + paper.yaml: train.epochs: 0 is less than the minimum of 1"),
    (["train.backbone=frozen"], None, "train.backbone: 'frozen' is not one of"),
    (["train.epochs"], None, "--set 'train.epochs': expected <dotted.key>=<value>"),
    ([], {"train": {"epoch": 200}}, "paper.yaml: train.epoch is not a key of params.yaml"),
])
def test_bad_items_are_refused_naming_the_key(repo_params, sets, overlay, message):
    with pytest.raises(OverlayError) as err:
        resolve(repo_params, overlay or read_overlay(OVERLAY), [parse_set(s) for s in sets], "paper.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_fineparsers_sap_tier_must_fit_its_backbone_naming_the_keys(repo_params):
    """T2 reads the cache's Mixed_4f (the frozen I3D's): cached only; T1 reads the frames: finetune
    only; T0 is not built. A variant's own train.backbone wins over params.train's; a variant that
    is not listed trains nowhere and is not checked; one without SAP (Table 3's C) runs on either."""
    from aqa.params import ParamsError, validate_params

    with pytest.raises(OverlayError) as err:
        resolve(repo_params, read_overlay(OVERLAY), [parse_set("train.variants.fineparser.sap.tier=T2")])
    message = str(err.value)
    assert "train.variants.fineparser (FineParser, in datasets.dn_only.finediving) with train.backbone = " \
           "finetune: SAP at tier T2" in message and "set train.variants.fineparser.sap.tier: T1" in message
    assert "\n" not in message and message.count("FineParser,") == 1   # the rest of paper mode is fine

    p = copy.deepcopy(repo_params)
    p["train"]["backbone"] = "finetune"              # params.train's backbone, the default's FineParser at T2
    with pytest.raises(ParamsError, match=r"train.variants.fineparser \(FineParser.*SAP at tier T2"):
        validate_params(p)
    p["train"]["variants"]["fineparser"]["train"]["backbone"] = "cached"      # its own backbone wins
    p["train"]["variants"]["fp_table3_a"]["train"]["backbone"] = "finetune"   # defined, not listed: trains nowhere
    validate_params(p)
    p["datasets"]["dn_only"]["finediving"].append("fp_table3_c")              # no SAP: the frames path fits it
    validate_params(p)
    p["train"]["variants"]["fineparser"]["sap"] = {"tier": "T1"}              # T1 on the cached backbone
    with pytest.raises(ParamsError, match=r"sap.tier T1 reads the frames.*train.variants.fineparser.train."
                                          r"backbone: finetune"):
        validate_params(p)
    p["train"]["variants"]["fineparser"]["sap"] = {"tier": "T0"}
    with pytest.raises(ParamsError, match="sap.tier T0 is not built"):
        validate_params(p)


def test_dvc_reads_the_set_param_arguments_back_as_the_merged_params(tmp_path, repo_params):
    """DVC's own --set-param code (dvc.utils.hydra.apply_overrides) on a copy of params.yaml gives
    exactly the params `resolve` validated, for every kind of value."""
    from dvc.utils.hydra import apply_overrides

    p = copy.deepcopy(repo_params)
    p["datasets"]["variants"]["mtl_aqa"] = []      # so that datasets.run may drop MTL-AQA
    p["datasets"]["dn_only"]["mtl_aqa"] = []
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(p, sort_keys=False))
    # (a small lr on a variant without a schedule: FineParser's warm-up starts at 1e-4, aqa.params)
    sets = [parse_set(s) for s in ("train.variants.fr.train.lr=1.0e-5", "train.weight_decay=2.5e-07", "train.seeds=[3, 4]",
                                   "train.variants.fr.train.epochs=3", "train.device=cpu", "train.amp=false",
                                   "extract_frames.frames_root.finediving=/data/my frames/it's here",
                                   "synthesize_videos.finediving.source_annotations=/data/Annotations",
                                   "datasets.run=[finediving]")]
    overrides, merged = resolve(p, read_overlay(OVERLAY), sets)
    args = set_param_args(overrides, p)
    assert "+train.variants.fr.train.epochs=3" in args    # a key params.yaml lacks is added
    apply_overrides(params, args[1::2])
    assert read_yaml(params.read_text()) == merged


@pytest.mark.parametrize("value, text", [(None, "null"), (True, "true"), (3, "3"), (1e-4, "0.0001"),
                                         (1e-5, "1.0e-5"), (2.5e-7, "2.5e-7"), ("cached", "'cached'"),
                                         ("it's", '"it\'s"'), ([0, "a"], "[0,'a']")])
def test_hydra_values(value, text):
    assert hydra_value(value) == text


def test_the_command_asks_dvc_for_the_fine_tuned_backbone(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO / "params", tmp_path / "params")
    proc = subprocess.run([str(AQA), "paper", "--dry-run", "--name", "p1"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    cmd = shlex.split(proc.stdout.strip().splitlines()[-1])
    assert cmd[1:5] == ["exp", "run", "--name", "p1"] and Path(cmd[0]).name == "dvc"
    pairs = dict(a.split("=", 1) for a in cmd[5:][1::2])
    assert cmd[5::2] == ["--set-param"] * len(pairs)
    assert pairs["train.backbone"] == "'finetune'" and pairs["train.epochs"] == "200"
    assert pairs["train.validation_fraction"] == "0.0"

    bad = subprocess.run([str(AQA), "paper", "--dry-run", "-S", "train.epochs=0"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("aqa paper: error: params.yaml + params/paper.yaml: train.epochs: 0")

    assert pairs["+train.variants.fineparser.sap.tier"] == "'T1'"   # FineParser from the frames
    fp = subprocess.run([str(AQA), "paper", "--dry-run", "-S", "train.variants.fineparser.sap.tier=T2"],
                        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert fp.returncode == 1 and fp.stderr.count("\n") == 1 and "dvc" not in fp.stdout
    assert "train.variants.fineparser (FineParser" in fp.stderr and "sap.tier: T1" in fp.stderr

    shutil.copy(REPO / "params.yaml", tmp_path / "other.yaml")   # DVC would set params.yaml, not this
    other = subprocess.run([str(AQA), "paper", "--dry-run", "--params", "other.yaml"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert other.returncode == 1 and other.stderr.startswith("aqa paper: error: --params other.yaml: dvc exp run")


def test_the_tables_say_what_honest_means_without_a_validation_split(repo_params):
    assert "honest = best-validation checkpoint evaluated once" in both_protocols(repo_params)
    _, merged = resolve(repo_params, read_overlay(OVERLAY), [])
    assert "honest = last epoch's model (no validation split" in both_protocols(merged)
    assert "honest = last epoch's model" in table3({}, merged).caption


def test_the_fineparser_overlay_adds_fineparser_to_the_default_through_dvc(tmp_path, repo_params):
    """params/fineparser.yaml (`make fineparser`): the default (which trains FineParser's main model)
    plus the Table 3 and 4 ablations, w/ DN only with the main model's epochs and seeds, validated as a
    whole, and DVC's --set-param code gives those params back."""
    from dvc.utils.hydra import apply_overrides

    from aqa.trained import trained_names, variant_seeds

    overrides, merged = resolve(repo_params, read_overlay(REPO / "params" / "fineparser.yaml"), [])
    assert repo_params["datasets"]["dn_only"]["finediving"] == ["musdl", "fineparser"]   # the default's FineParser
    ablations = ["fp_table3_a", "fp_table3_b", "fp_table3_c", "fp_table3_d", "fp_sve2", "fp_sve8"]
    assert merged["datasets"]["dn_only"]["finediving"] == ["musdl", "fineparser", *ablations]   # MUSDL kept
    assert merged["datasets"]["variants"] == repo_params["datasets"]["variants"]
    names = trained_names(merged, "finediving")
    assert all(f"{v}-dn" in names and f"{v}-nodn" not in names for v in ablations)
    assert {tuple(variant_seeds(merged, v)) for v in ["fineparser", *ablations]} == {(0, 1)}
    assert {merged["train"]["variants"][v]["train"]["epochs"] for v in ["fineparser", *ablations]} == {2}
    assert merged["train"] == repo_params["train"] and merged["extract_features"] == repo_params["extract_features"]
    for section in ("synthesize_videos", "extract_frames", "evaluate", "make_report"):
        assert merged[section] == repo_params[section]
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(repo_params, sort_keys=False))
    apply_overrides(params, set_param_args(overrides, repo_params)[1::2])
    assert read_yaml(params.read_text()) == merged
