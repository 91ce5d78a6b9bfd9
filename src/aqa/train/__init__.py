"""Training: in-memory dataset, exemplar sampling, the epoch loop, checkpoints and MLflow tracking.

`aqa.train.run.train_variant` is the stage function behind `aqa train`.
"""
