# Paths of the pipeline (the DAG chooses them; dvc.yaml uses the same) and small helpers.

from pathlib import Path

from aqa.cluster import job_resources, job_threads
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

# Every dataset of datasets.run goes through every stage under its own paths ({dataset} below;
# docs/CONTRACTS.md). A path with {dataset} is a pattern: give the dataset with .format() or as
# a rule's wildcard.
DATASETS = config["datasets"]["run"]
RAW_VIDEOS = "data/raw/{dataset}/videos"
RAW_ANNOTATIONS = "data/raw/{dataset}/annotations"
RAW_MASKS = "data/raw/{dataset}/masks"
FRAMES = "data/interim/frames/{dataset}"
ANNOTATIONS = "data/processed/annotations/{dataset}"
DIVES = "data/processed/annotations/{dataset}/dives.parquet"
I3D = "data/external/i3d"
FEATURES = "data/processed/features/{dataset}/i3d"
MODELS = "models/{dataset}"
METRICS = "reports/metrics/{dataset}"
PREDICTIONS = "reports/predictions/{dataset}"
TABLES = "reports/tables"
FIGURES = "reports/figures"
PLOTS = "reports/plots"      # flat CSVs of dvc.yaml's plots
SUMMARY = "reports/summary"  # dvc.yaml's metrics


wildcard_constraints:
    dataset="|".join(DATASETS),
    video=r"[^/.][^/]*",  # a video folder, never the stage's .extract_frames.done flag


def frames_root(dataset):
    """Real frames given for the dataset (extract_frames.frames_root.<dataset>) skip extract_frames."""
    return config["extract_frames"]["frames_root"][dataset]


def frames_source(dataset):
    """Where the dataset's frames are read from: the real frames given, else extract_frames' output."""
    return frames_root(dataset) or FRAMES.format(dataset=dataset)


def trained_variants(dataset):
    """<variant>-<mode> for every variant trained on the dataset and every exemplar mode."""
    modes = config["train"]["exemplar_modes"]
    return [f"{v}-{m}" for v in config["datasets"]["variants"][dataset] for m in modes]


def all_trained(pattern):
    """`pattern` ({dataset}, {name}) for every dataset and every variant trained on it."""
    return [pattern.format(dataset=d, name=n) for d in DATASETS for n in trained_variants(d)]
