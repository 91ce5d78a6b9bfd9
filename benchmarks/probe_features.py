"""How much of the dives' quality the cached I3D features carry (a data diagnostic, not a model).

For a project folder (default: this one) it reads dives.parquet and the pooled feature cache and
prints:
- ridge probes (5-fold cross-validated Spearman) of execution (score / DD) and of DD from the
  features, on the mean over the 9 snippets and on the 9 snippets concatenated;
- how often the nearest neighbour in feature space comes from the same competition video (a
  high value means the footage, not the dive, dominates the features);
- a linear contrastive regressor with dive-number exemplars (a linear F+R: ridge on feature
  differences of same-type training pairs, voting over up to 10 exemplars), test Spearman;
- the action-type floor (mean training score of the dive's type), test Spearman.

    .venv/bin/python benchmarks/probe_features.py [PROJECT_DIR ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

LAMBDAS = (10.0, 100.0, 1000.0)


def ridge_predict(x_fit: np.ndarray, y_fit: np.ndarray, x_new: np.ndarray, lam: float) -> np.ndarray:
    """Ridge on standardised features, solved in the (small) sample space."""
    mu, sd = x_fit.mean(0), x_fit.std(0) + 1e-6
    a, b = (x_fit - mu) / sd, (x_new - mu) / sd
    alpha = np.linalg.solve(a @ a.T + lam * np.eye(len(a)), y_fit - y_fit.mean())
    return b @ (a.T @ alpha) + y_fit.mean()


def cv_spearman(x: np.ndarray, y: np.ndarray, lam: float, folds: int = 5) -> float:
    order = np.random.default_rng(0).permutation(len(y))
    pred = np.zeros(len(y))
    for f in range(folds):
        held = order[f::folds]
        fit = np.ones(len(y), bool)
        fit[held] = False
        pred[held] = ridge_predict(x[fit], y[fit], x[held], lam)
    return float(spearmanr(pred, y)[0])


def same_video_neighbour(x: np.ndarray, videos: np.ndarray) -> float:
    z = (x - x.mean(0)) / (x.std(0) + 1e-6)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    return float((videos[sim.argmax(1)] == videos).mean())


def linear_fr(x: np.ndarray, score: np.ndarray, action: np.ndarray, train: np.ndarray, lam: float) -> float:
    """Test Spearman of a linear contrastive regressor with same-type exemplars."""
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
    z = (x - mu) / sd
    tr, te = np.flatnonzero(train), np.flatnonzero(~train)
    pairs = [(i, j) for i in tr for j in tr if i != j and action[i] == action[j]]
    d = np.array([z[i] - z[j] for i, j in pairs])
    t = np.array([score[i] - score[j] for i, j in pairs])
    w = d.T @ np.linalg.solve(d @ d.T + lam * np.eye(len(d)), t)
    pred = []
    for i in te:
        ex = [j for j in tr if action[j] == action[i]][:10] or list(tr)
        pred.append(np.mean([score[j] + (z[i] - z[j]) @ w for j in ex]))
    return float(spearmanr(pred, score[te])[0])


def probe(root: Path) -> None:
    dives = pd.read_parquet(root / "data/processed/annotations/finediving/dives.parquet")
    feats = root / "data/processed/features/finediving/i3d"
    pooled = np.stack([np.load(feats / v / str(i) / "pooled.npy")[0].astype(np.float32)
                       for v, i in zip(dives.video, dives.idx)])  # (N, 9, 1024), original view
    score = dives.dive_score.to_numpy()
    execution = score / dives.difficulty.to_numpy()
    action = dives.action_type.astype(str).to_numpy()
    train = dives.split.to_numpy() == "train"
    print(f"== {root}: {len(dives)} dives ({train.sum()} train, {(~train).sum()} test)")
    for name, x in (("mean", pooled.mean(1)), ("concat", pooled.reshape(len(pooled), -1))):
        exe = " ".join(f"{cv_spearman(x, execution, lam):.2f}" for lam in LAMBDAS)
        dd = " ".join(f"{cv_spearman(x, dives.difficulty.to_numpy(), lam):.2f}" for lam in LAMBDAS)
        fr = " ".join(f"{linear_fr(x, score, action, train, lam):.3f}" for lam in LAMBDAS)
        print(f"  {name:6s} 5-fold probe execution {exe} | DD {dd} | linear F+R test {fr}  (lambda {LAMBDAS})")
    print(f"  nearest neighbour from the same video: {same_video_neighbour(pooled.mean(1), dives.video.to_numpy()):.2f}"
          f" (chance {pd.Series(dives.video).value_counts(normalize=True).pow(2).sum():.2f})")
    means = pd.Series(score[train]).groupby(action[train]).mean()
    floor = [means.get(a, score[train].mean()) for a in action[~train]]
    print(f"  action-type floor, test: {spearmanr(floor, score[~train])[0]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="*", type=Path, default=[Path(".")], help="project folders")
    for root in parser.parse_args().roots:
        probe(root)


if __name__ == "__main__":
    main()
