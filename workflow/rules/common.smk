# Paths of the pipeline (the DAG chooses them; dvc.yaml uses the same) and small helpers.

import os
from pathlib import Path

from aqa import params_digest
from aqa.cluster import job_resources, job_threads
from aqa.data.datasets import dvc_stage
from aqa.params import load_params
from aqa.trained import is_dn_only, trained_names


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


def masks_source(dataset):
    """Where the dataset's masks are read from (FineParser's cache additions): the real masks given
    (extract_frames.masks_root.<dataset>), else the stand-in's."""
    return config["extract_frames"]["masks_root"][dataset] or RAW_MASKS.format(dataset=dataset)


def trained_variants(dataset):
    """<variant>-<mode> of every variant trained on the dataset: datasets.variants in every exemplar
    mode, datasets.dn_only in mode dn (aqa.trained)."""
    return trained_names(config, dataset)


def all_trained(pattern):
    """`pattern` ({dataset}, {name}) for every dataset and every variant trained on it."""
    return [pattern.format(dataset=d, name=n) for d in DATASETS for n in trained_variants(d)]


# What each stage's outputs are made from besides data, as dvc.yaml's deps and params list them
# (a test keeps the two equal: tests/unit/workflow/test_stage_inputs.py), so that `snakemake -n`
# calls a stage stale when `dvc status` does. Every rule of a stage takes the stage's code files
# as inputs (a folder: every file in it, as DVC hashes it) and a file holding the values of its
# params keys, rewritten only when they change (aqa.params_digest; {dataset} and {variant} are
# the DVC stage's ${item.dataset} and ${item.variant}).
STAGE_CODE = {
    "synthesize_videos": ["src/aqa/data/synthesize.py", "src/aqa/data/synth", "src/aqa/data/finediving.py",
                          "src/aqa/data/mtl_aqa.py", "src/aqa/data/datasets.py", "workflow/rules/data.smk"],
    "extract_frames": ["src/aqa/data/frames.py", "src/aqa/data/video.py", "src/aqa/data/datasets.py",
                       "workflow/rules/data.smk"],
    "convert_annotations": ["src/aqa/data/annotations.py", "src/aqa/data/schema.py", "src/aqa/data/validation.py",
                            "src/aqa/data/protocol.py", "src/aqa/data/finediving.py", "src/aqa/data/mtl_aqa.py",
                            "workflow/rules/data.smk"],
    "fetch_i3d": ["src/aqa/models/fetch_i3d.py", "src/aqa/models/i3d_weights.py", "workflow/rules/features.smk"],
    "extract_features": ["src/aqa/features", "src/aqa/models/i3d.py", "src/aqa/models/i3d_weights.py",
                         "src/aqa/models/sve_backbone.py", "src/aqa/data/masks.py", "workflow/rules/features.smk"],
    "train": ["src/aqa/models", "src/aqa/train", "src/aqa/evaluate/voting.py", "src/aqa/evaluate/direct.py",
              "src/aqa/evaluate/sap_masks.py", "src/aqa/evaluate/mask_metrics.py", "src/aqa/metrics.py", "src/aqa/provenance.py", "src/aqa/trained.py", "workflow/rules/models.smk"],
    "evaluate": ["src/aqa/evaluate", "src/aqa/metrics.py", "src/aqa/provenance.py", "src/aqa/trained.py",
                 "workflow/rules/models.smk"],
    "make_report": ["src/aqa/report", "src/aqa/provenance.py", "src/aqa/trained.py", "workflow/rules/report.smk",
                    "src/aqa/models/fineparser_ablations.py"],
    "make_figures": ["src/aqa/report", "src/aqa/provenance.py", "src/aqa/trained.py", "workflow/rules/report.smk"],
}
STAGE_PARAMS = {
    "synthesize_videos": ["extract_frames.frames_root.{dataset}", "synthesize_videos.seed", "synthesize_videos.{dataset}",
                          "synthesize_videos.height",
                          "synthesize_videos.width", "synthesize_videos.fps", "synthesize_videos.gap_frames",
                          "synthesize_videos.crf"],
    "extract_frames": ["extract_frames.frames_root.{dataset}", "extract_frames.height", "extract_frames.jpeg_quality"],
    "convert_annotations": ["convert_annotations"],
    "fetch_i3d": ["fetch_i3d"],
    "extract_features": ["extract_features", "extract_frames.frames_root.{dataset}",
                         "extract_frames.masks_root.{dataset}"],
    # exactly what a training reads (aqa.provenance; tests/unit/test_provenance.py)
    "train": ["train.seeds", "train.epochs", "train.batch_size", "train.lr", "train.lr_backbone",
              "train.weight_decay", "train.prob_tas_threshold", "train.validation_fraction",
              "train.validation_seed", "train.use_flip_view", "train.device", "train.amp", "train.batchnorm",
              "train.backbone", "train.channels_last", "train.compile", "train.lr_schedule", "train.variants.{variant}",
              "evaluate"],
    "evaluate": ["evaluate", "make_report.exemplar_counts", "extract_frames.frames_root.{dataset}"],
    "make_report": ["datasets", "make_report", "train", "evaluate", "extract_frames.frames_root",
                    "synthesize_videos.mtl_aqa.source_annotations"],
    "make_figures": ["datasets", "make_figures", "make_report", "train", "evaluate", "extract_frames.frames_root"],
}
PER_DATASET = {"synthesize_videos", "extract_frames", "convert_annotations", "extract_features"}
PER_VARIANT = {"train", "evaluate"}


def code_files(stage):
    """The stage's code as files (Snakemake dates a folder by its own entry, not by what is in it).

    Only the files the project holds: a copy of the workflow without src/ (the cluster test's
    project) runs the installed `aqa`, whose code it cannot date.
    """
    files = []
    for dep in STAGE_CODE[stage]:
        if os.path.isdir(dep):
            files += sorted(str(p) for p in Path(dep).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        elif os.path.isfile(dep):
            files.append(dep)
    return files


def params_file_of(stage, dataset=None, name=None):
    """.aqa/params/<DVC stage name>.json: `train@fr-dn` of MTL-AQA is train_mtl_aqa@fr-dn, a dn-only
    variant's train_dn@fineparser-dn."""
    if stage in PER_VARIANT:
        dn_only = is_dn_only(config, dataset, name.rsplit("-", 1)[0])
        return f"{params_digest.ROOT}/{dvc_stage(stage, dataset, dn_only)}@{name}.json"
    if stage in PER_DATASET:
        return f"{params_digest.ROOT}/{stage}@{dataset}.json"
    return f"{params_digest.ROOT}/{stage}.json"


def stage_inputs(stage):
    """The named inputs of each job of `stage`: its code files and its params file."""
    return {
        "code": code_files(stage),
        "params_file": lambda wildcards: params_file_of(
            stage, wildcards.get("dataset"), wildcards.get("name") or wildcards.get("variant")),
    }


def write_params_files():
    """Write every stage instance's params file whose values changed (the driver only: cluster job
    steps read the ones it wrote)."""
    lock = []   # dvc.lock, read once if a params file is new

    def recorded(dvc_name):
        if not lock:
            lock.append(params_digest.read_lock("dvc.lock"))
        return params_digest.locked_values(lock[0], dvc_name, PARAMS)

    for stage, keys in STAGE_PARAMS.items():
        datasets = DATASETS if stage in PER_DATASET | PER_VARIANT else [None]
        for dataset in datasets:
            names = trained_variants(dataset) if stage in PER_VARIANT else [None]
            for name in names:
                variant = name.rsplit("-", 1)[0] if name else None
                wanted = [k.format(dataset=dataset, variant=variant) for k in keys]
                path = params_file_of(stage, dataset, name)
                dvc_name = Path(path).stem
                params_digest.write_if_changed(path, params_digest.stage_values(config, wanted),
                                               lambda name=dvc_name: recorded(name))


if not (workflow.remote_exec or workflow.subprocess_exec):
    write_params_files()


def videos_to_cut(wildcards):
    """The frame folders of every annotated video of the dataset (known once the checkpoint has run).

    None when the dataset's real frames are given. A stray .mp4 without annotated dives, or an
    annotated video without its .mp4, stops the run here with one line naming the file, before any
    job starts.
    """
    from aqa.data.frames import videos_to_extract   # here: PyAV costs every other job's start ~0.2 s

    if frames_root(wildcards.dataset):
        return []
    out = checkpoints.synthesize_videos_dataset.get(dataset=wildcards.dataset).output
    videos = videos_to_extract(out.videos, out.annotations, wildcards.dataset)
    return expand(f"{FRAMES}/{{video}}", dataset=wildcards.dataset, video=videos)


def raw_annotation_files(wildcards):
    """Every file of the dataset's raw annotations, known once the checkpoint has run (Snakemake
    dates a folder by its own entry, so an edited annotation file would go unseen)."""
    out = checkpoints.synthesize_videos_dataset.get(dataset=wildcards.dataset).output
    return sorted(str(p) for p in Path(out.annotations).rglob("*")
                  if p.is_file() and p.name != ".snakemake_timestamp")
