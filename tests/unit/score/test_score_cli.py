"""`aqa score` on a dive rendered by the stand-in renderer (true score known), with small models
trained in the test on a real I3D cache (random weights: the mechanics, not the accuracy)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from aqa.data.annotations import read_dives
from aqa.evaluate.direct import predict_rows
from aqa.evaluate.voting import vote
from aqa.features.cache import FeatureCache
from aqa.score import score_dive
from aqa.score.clip import open_clip
from aqa.score.features import clip_features
from aqa.score.model import load_seed, pool_rows
from aqa.train.data import load_dive_data
from aqa.train.loop import build
from score_project import cut_dive, make_project, project_params, scorable_dive
from train_helpers import sqlite_store

AQA = Path(sys.executable).with_name("aqa")
STEPS = ["take-off", "flight", "entry"]


@pytest.fixture(scope="module")
def project(tmp_path_factory, repo_params):
    import copy
    from tiny_params import shrink

    root = tmp_path_factory.mktemp("score_project")
    params = project_params(shrink(copy.deepcopy(repo_params)))
    paths = make_project(root, params, sqlite_store(root))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    data = load_dive_data(paths["dives"], paths["features"])
    trained = load_seed(paths["models"] / "tsa-dn", 0, torch.device("cpu"))
    pool_keys = set(np.asarray(data.keys, dtype=object)[pool_rows(data, trained.config)])
    dive = scorable_dive(paths["dives"], pool_keys)
    paths.update(params=params, dive=dive, clip=cut_dive(paths["videos"], dive, root / "new_dive.mp4"))
    return paths


def _aqa(project, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(AQA), "score", *map(str, args)], cwd=project["root"], env=env, capture_output=True,
                          text=True, timeout=600)


def test_score_tsa_prints_and_writes_the_score_steps_account_and_exemplars(project, tmp_path):
    dive = project["dive"]
    out = _aqa(project, project["clip"], "--dive-number", dive.action_type.upper(), "--model", "models/finediving/tsa-dn",
               "--json", tmp_path / "r.json", "--figure", tmp_path / "r.png")
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads((tmp_path / "r.json").read_text())
    # the dive as given, read as the pool spells it; its DD the pool's (one DD for that number)
    assert r["dive_number"] == dive.action_type and r["difficulty"] == pytest.approx(dive.difficulty)
    assert r["clip"]["num_frames"] == dive.num_frames and r["clip"]["first_frame"] == 0
    # default seed: the best validation rho
    vals = {s: torch.load(project["models"] / "tsa-dn" / f"seed{s}" / "best_val.pt", weights_only=True)["val"].get("rho")
            for s in (0, 1)}
    best = max(vals, key=lambda s: (-math.inf if vals[s] is None else vals[s], -s))
    assert r["model"]["seed"] == best and r["model"]["validation_rho"] == vals[best]
    assert r["model"]["variant"] == "tsa-dn" and r["scoring"] == "voting"
    assert r["model"]["test_rmse"] > 0
    # exemplars: pool dives of the same dive number, their true scores from the annotations
    dives = read_dives(project["dives"]).set_index("key")
    ex = r["exemplars"]
    assert 1 <= len(ex) <= 3 and r["score"]["spread"]["num_exemplars"] == len(ex)
    for e in ex:
        assert dives.loc[e["key"], "action_type"] == dive.action_type and dives.loc[e["key"], "split"] == "train"
        assert e["true_score"] == pytest.approx(dives.loc[e["key"], "dive_score"])
        assert e["difference"] == pytest.approx(e["predicted"] - e["true_score"])
        # TSA: the steps' contributions add up to the difference from that exemplar
        assert sorted(e["step_contributions"]) == sorted(STEPS)      # JSON keys are sorted
        assert sum(e["step_contributions"].values()) == pytest.approx(e["difference"], abs=1e-3)
    preds = np.array([e["predicted"] for e in ex])
    assert r["score"]["predicted"] == pytest.approx(preds.mean())
    assert r["score"]["spread"]["std"] == pytest.approx(preds.std())
    assert (r["score"]["spread"]["min"], r["score"]["spread"]["max"]) == pytest.approx((preds.min(), preds.max()))
    account = r["step_account"]
    assert sum(account.values()) == pytest.approx(r["score"]["predicted"] - np.mean([e["true_score"] for e in ex]),
                                                  abs=1e-3)
    # three contiguous steps covering the clip, in its own frame numbers
    steps = r["steps"]
    assert [s["name"] for s in steps] == STEPS and steps[0]["first_frame"] == 0
    assert steps[-1]["last_frame"] == dive.num_frames - 1
    assert all(a["last_frame"] + 1 == b["first_frame"] for a, b in zip(steps, steps[1:]))
    # the text says the same
    text = out.stdout
    assert f"predicted score: {r['score']['predicted']:.2f}" in text
    assert "predicted steps (clip frames): take-off 0-" in text and "per-step account" in text
    assert all(e["key"] in text for e in ex)
    assert "I3D features" in out.stderr     # progress on the long part
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"true {dive.dive_score}, predicted {r['score']['predicted']:.2f}")


def test_default_seed_is_the_best_on_validation(project, tmp_path):
    """The seed is chosen by validation rho (never test): rewrite the two checkpoints' records."""
    from aqa.score.model import load_seed

    models = tmp_path / "tsa-dn"
    shutil.copytree(project["models"] / "tsa-dn", models)
    for seed, rho in ((0, 0.2), (1, 0.6)):
        path = models / f"seed{seed}" / "best_val.pt"
        state = torch.load(path, weights_only=True)
        state["val"] = {**state["val"], "rho": rho}
        torch.save(state, path)
    assert load_seed(models, None, torch.device("cpu")).seed == 1
    assert load_seed(models, 0, torch.device("cpu")).seed == 0
    (models / "seed1" / "best_val.pt").unlink()          # a seed without its checkpoint is not a trained seed
    assert load_seed(models, None, torch.device("cpu")).seed == 0


def test_score_runs_the_pipelines_protocol_exactly(project, tmp_path):
    """A folder of the dive's own pipeline frames: the features equal the cache's, and the votes
    over the same exemplars equal evaluate's voting of that dive."""
    dive = project["dive"]
    cache = FeatureCache(project["features"])
    folder = project["frames"] / dive.video / str(dive.idx)
    clip = open_clip(folder, tmp_path, height=64, jpeg_quality=90, min_frames=16)
    assert (clip.first, clip.last) == (dive.start_frame, dive.end_frame)
    pooled, maps = clip_features(clip, cache.manifest, cache.root, project["weights"], torch.device("cpu"), False)
    cached = cache.load(dive.video, int(dive.idx))
    assert np.array_equal(pooled, cached[0]) and np.array_equal(maps, cached[1])

    r = score_dive(folder, dive_number=dive.action_type, model_dir=project["models"] / "tsa-dn",
                   features_dir=project["features"], dives_parquet=project["dives"], weights_path=project["weights"],
                   frames_cfg=project["params"]["extract_frames"], seed=0, progress=False)
    data = load_dive_data(project["dives"], project["features"])
    trained = load_seed(project["models"] / "tsa-dn", 0, torch.device("cpu"))
    model = build(trained.config, torch.device("cpu"))
    model.load_state_dict(trained.state["model"])
    row = data.keys.index(dive.key)
    ex = np.array([[data.keys.index(e["key"]) for e in r["exemplars"]]])
    votes = vote(model, data, np.array([row]), ex, batch_size=8)
    assert [e["predicted"] for e in r["exemplars"]] == pytest.approx(votes.per_exemplar[0].tolist(), abs=1e-4)
    assert r["score"]["predicted"] == pytest.approx(float(votes.pred[0]), abs=1e-4)
    assert r["transitions_96"] == votes.pred_transitions[0].tolist()
    assert [s["first_frame"] for s in r["steps"]][0] == dive.start_frame


def test_score_direct_method_predicts_without_exemplars(project, tmp_path):
    dive = project["dive"]
    folder = project["frames"] / dive.video / str(dive.idx)
    r = score_dive(folder, dive_number=dive.action_type, model_dir=project["models"] / "i3d_mlp-dn",
                   features_dir=project["features"], dives_parquet=project["dives"], weights_path=project["weights"],
                   frames_cfg=project["params"]["extract_frames"], seed=1, progress=False,
                   figure_path=tmp_path / "direct.svg")
    assert r["scoring"] == "direct" and r["score"]["spread"] is None and r["exemplars"] == []
    assert r["steps"] is None and r["step_account"] is None
    data = load_dive_data(project["dives"], project["features"])
    trained = load_seed(project["models"] / "i3d_mlp-dn", 1, torch.device("cpu"))
    model = build(trained.config, torch.device("cpu"))
    model.load_state_dict(trained.state["model"])
    expected = predict_rows(model, data, np.array([data.keys.index(dive.key)]), batch_size=4)[0]
    assert r["score"]["predicted"] == pytest.approx(float(expected), abs=1e-4)   # x its DD, as evaluate
    assert "<svg" in (tmp_path / "direct.svg").read_text()


def _other_features(project, tmp_path):
    cache = tmp_path / "features"
    shutil.copytree(project["features"], cache)
    manifest = json.loads((cache / "manifest.json").read_text())
    manifest["protocol"]["snippet_stride"] = 9      # features of another protocol
    (cache / "manifest.json").write_text(json.dumps(manifest))
    return ["--features", cache]


def _other_weights(project, tmp_path):
    from aqa.models.fetch_i3d import WEIGHTS_NAME, import_state_dict
    from aqa.models.i3d import InceptionI3d

    torch.manual_seed(1)
    torch.save(InceptionI3d().state_dict(), tmp_path / "other.pt")
    import_state_dict(tmp_path / "other.pt", tmp_path / "i3d")
    return ["--weights", tmp_path / "i3d" / WEIGHTS_NAME]


def _not_a_video(project, tmp_path):
    (tmp_path / "dive.mp4").write_text("not a video\n")
    return [tmp_path / "dive.mp4"]


def _too_short(project, tmp_path):
    from aqa.data.video import write_video

    write_video(tmp_path / "short.mp4", (np.full((64, 112, 3), 90 + 10 * i, np.uint8) for i in range(8)))
    return [tmp_path / "short.mp4"]


BAD = {
    "not_a_video": (_not_a_video, "not a readable video"),
    "too_short": (_too_short, "8 frame(s), fewer than the 16 the protocol needs"),
    "unknown_dive_number": (lambda p, t: ["--dive-number", "9999z"], "dive number '9999z' is not in the training pool"),
    "other_features": (_other_features, "trained on other features"),
    "other_weights": (_other_weights, "trained on other features"),
    "missing_model": (lambda p, t: ["--model", "models/finediving/tsa-nodn"], "no trained model here"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_score_refuses_bad_input_in_one_line(project, tmp_path, case):
    """In process through the real click command (a subprocess each would cost a torch import)."""
    from click.testing import CliRunner

    from aqa.cli import main

    make, expected = BAD[case]
    extra = make(project, tmp_path)
    clip = [extra.pop(0)] if extra and not str(extra[0]).startswith("--") else [project["clip"]]
    args = {"--dive-number": project["dive"].action_type, "--model": project["models"] / "tsa-dn",
            "--params": project["root"] / "params.yaml"}
    args.update(dict(zip(extra[::2], extra[1::2])))
    if args["--model"] == "models/finediving/tsa-nodn":
        args["--model"] = project["models"] / "tsa-nodn"
    result = CliRunner().invoke(main, ["score", *map(str, clip), *[str(x) for kv in args.items() for x in kv]])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("aqa score: error:")]
    assert len(lines) == 1 and expected in lines[0], result.stderr[-2000:]
    assert result.stdout == "" and result.exception is None or isinstance(result.exception, SystemExit)
