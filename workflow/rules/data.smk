# Data stages: stand-in footage, frames, Parquet annotations.

from aqa.data.frames import videos_to_extract
from aqa.snakemake_lock import hold_driver_lock
from snakemake.logging import logger

# Resume after a kill: a Snakemake lock left by a killed run is removed here, before Snakemake
# looks for it, when no Snakemake of this workflow is alive in the folder (aqa.snakemake_lock
# tells by an OS lock the kernel drops with its process). Cluster job steps leave it alone.
if not (workflow.remote_exec or workflow.subprocess_exec):
    for _stale in hold_driver_lock("."):
        logger.warning(f"removed {_stale}: a Snakemake lock left by a run that was killed")


checkpoint synthesize_videos:
    output:
        videos=directory(RAW_VIDEOS),
        annotations=directory(RAW_ANNOTATIONS),
        masks=directory(RAW_MASKS),
    params:
        section=config["synthesize_videos"],
    threads: workflow.cores
    log:
        "logs/synthesize_videos/synthesize_videos.log",
    shell:
        "{AQA} synthesize-videos --params {PARAMS} --log {log} --videos {output.videos}"
        " --annotations {output.annotations} --masks {output.masks}"


def videos_to_cut(wildcards):
    """The frame folders of every annotated video (known once the checkpoint has run).

    A stray .mp4 without annotated dives, or an annotated video without its .mp4, stops the
    run here with one line naming the file, before any job starts.
    """
    out = checkpoints.synthesize_videos.get().output
    return expand(f"{FRAMES}/{{video}}", video=videos_to_extract(out.videos, out.annotations))


rule extract_frames_video:
    input:
        video=f"{RAW_VIDEOS}/{{video}}.mp4",
        annotations=RAW_ANNOTATIONS,
    output:
        directory(f"{FRAMES}/{{video}}"),
    params:
        section=config["extract_frames"],
    threads: workflow.cores
    log:
        "logs/extract_frames/{video}.log",
    shell:
        "{AQA} extract-frames --params {PARAMS} --log {log} --video {input.video}"
        " --annotations {input.annotations} --out {FRAMES}"


rule extract_frames:
    input:
        videos_to_cut if not config["extract_frames"]["frames_root"] else [],
    output:
        touch(f"{FRAMES}/.extract_frames.done"),


rule convert_annotations:
    input:
        annotations=RAW_ANNOTATIONS,
    output:
        directory(ANNOTATIONS),
    params:
        section=config["convert_annotations"],
    log:
        "logs/convert_annotations/convert_annotations.log",
    shell:
        "{AQA} convert-annotations --params {PARAMS} --log {log}"
        " --finediving {input.annotations} --out {output}"
