# Paths of the pipeline (the DAG chooses them; dvc.yaml uses the same) and small helpers.

from pathlib import Path

from aqa.params import load_params


def params_file():
    """The params file: the one given with --configfile, else params.yaml.

    The rules and the `aqa` commands they run must see the same values, so `config` is that file
    as aqa.params reads it (YAML 1.2 as DVC reads it: Snakemake's own loader reads `1e-3` as a
    string), validated whole with the schema and the cross-key checks before any rule is defined.
    --config overrides would reach the rules but not the commands, which read the file: refused.
    """
    if workflow.config_settings.config:
        raise ValueError("--config is not supported: the aqa commands read the params file, so "
                         "put the values in a copy of params.yaml and pass it with --configfile")
    given = workflow.config_settings.configfiles
    if len(given) > 1:
        raise ValueError(f"--configfile: give one params file, not {len(given)}")
    return str(given[0]) if given else "params.yaml"


PARAMS = params_file()
config.clear()
config.update(load_params(PARAMS))
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
