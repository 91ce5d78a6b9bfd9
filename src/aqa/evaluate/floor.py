"""Two floors a model should beat, from the annotations alone.

- The action-type floor: predict a test dive's score as the mean training score of its type.
  A model that does not beat this has learnt nothing beyond the dive number (the difficulty is
  a large part of the score). Types absent from training get the overall training mean.
- The difficulty floor: predict DD x the mean training execution part (score / DD), i.e. rank
  the dives by their degree of difficulty. The with-DD readings of the baselines (USDL-DD,
  MUSDL, CoRe w/ DN, I3D+MLP w/ DD) multiply by the dive's true DD, so they start from this
  floor: it tells how much of their rho the DD alone gives.
"""

from __future__ import annotations

import pandas as pd

from aqa.metrics import regression_metrics


def _splits(dives: pd.DataFrame, what: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    train = dives[dives["split"] == "train"]
    test = dives[dives["split"] == "test"]
    if train.empty or test.empty:
        raise ValueError(f"the {what} floor needs dives in both the train and the test split")
    return train, test


def _metrics(pred: pd.Series, test: pd.DataFrame) -> dict[str, float]:
    m = regression_metrics(pred.to_numpy(float), test["dive_score"].to_numpy(float))
    return {"rho": float(m["rho"]), "rl2_x100": 100.0 * float(m["rl2"]), "l2": float(m["l2"])}


def action_type_floor(dives: pd.DataFrame) -> dict[str, float]:
    """rho, rl2_x100 and l2 of the action-type floor on the test split, from the whole train split."""
    train, test = _splits(dives, "action-type")
    means = train.groupby(train["action_type"].astype(str))["dive_score"].mean()
    pred = test["action_type"].astype(str).map(means).fillna(train["dive_score"].mean())
    return _metrics(pred, test)


def difficulty_floor(dives: pd.DataFrame) -> dict[str, float]:
    """rho, rl2_x100 and l2 on the test split of DD x the whole train split's mean score / DD."""
    train, test = _splits(dives, "difficulty")
    execution = (train["dive_score"] / train["difficulty"]).mean()
    return _metrics(test["difficulty"] * execution, test)
