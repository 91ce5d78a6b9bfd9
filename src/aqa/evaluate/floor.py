"""The action-type floor: predict a test dive's score as the mean training score of its type.

A model that does not beat this has learnt nothing beyond the dive number (the difficulty is
a large part of the score). Types absent from training get the overall training mean.
"""

from __future__ import annotations

import pandas as pd

from aqa.metrics import regression_metrics


def action_type_floor(dives: pd.DataFrame) -> dict[str, float]:
    """rho, rl2_x100 and l2 of the floor on the test split, from the whole train split."""
    train = dives[dives["split"] == "train"]
    test = dives[dives["split"] == "test"]
    if train.empty or test.empty:
        raise ValueError("the action-type floor needs dives in both the train and the test split")
    means = train.groupby(train["action_type"].astype(str))["dive_score"].mean()
    pred = test["action_type"].astype(str).map(means).fillna(train["dive_score"].mean())
    m = regression_metrics(pred.to_numpy(float), test["dive_score"].to_numpy(float))
    return {"rho": float(m["rho"]), "rl2_x100": 100.0 * float(m["rl2"]), "l2": float(m["l2"])}
