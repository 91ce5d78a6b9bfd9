# Paths of the pipeline (the DAG chooses them; dvc.yaml uses the same) and small helpers.

from pathlib import Path

# The params file the `aqa` commands read: the one given with --configfile, else params.yaml.
PARAMS = workflow.configfiles[-1] if workflow.configfiles else "params.yaml"
AQA = "aqa"

RAW_VIDEOS = "data/raw/videos"
RAW_ANNOTATIONS = "data/raw/annotations"
RAW_MASKS = "data/raw/masks"
FRAMES = "data/interim/frames"
ANNOTATIONS = "data/processed/annotations"
DIVES = f"{ANNOTATIONS}/finediving/dives.parquet"
I3D = "data/external/i3d"
FEATURES = "data/processed/features/i3d"
MODELS = "models"
METRICS = "reports/metrics"
PREDICTIONS = "reports/predictions"
TABLES = "reports/tables"

# Real FineDiving frames given directly skip extract_frames.
FRAMES_SOURCE = config["extract_frames"]["frames_root"] or FRAMES


def trained_variants():
    """<variant>-<mode> for every trained variant and exemplar mode."""
    return [f"{v}-{m}" for v in config["train"]["variants"] for m in config["train"]["exemplar_modes"]]
