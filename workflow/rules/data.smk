# Data stages: stand-in footage, frames, Parquet annotations. Each stage's job runs per dataset
# (rule <stage>_dataset, wildcard {dataset}; the DVC stage <stage>@<dataset> runs one); the rule
# named after the stage asks for every dataset of datasets.run (`snakemake -c2 <stage>`).

from aqa.snakemake_lock import hold_driver_lock
from snakemake.logging import logger

# Resume after a kill: a Snakemake lock left by a killed run is removed here, before Snakemake
# looks for it, when no Snakemake of this workflow is alive in the folder (aqa.snakemake_lock
# tells by an OS lock the kernel drops with its process). Cluster job steps leave it alone.
if not (workflow.remote_exec or workflow.subprocess_exec):
    for _stale in hold_driver_lock("."):
        logger.warning(f"removed {_stale}: a Snakemake lock left by a run that was killed")


# With the dataset's real frames given (extract_frames.frames_root.<dataset>) it renders nothing:
# it writes the real annotation files and empty video and mask folders, so extract_frames cuts
# nothing and no later rule reads stand-in footage.
checkpoint synthesize_videos_dataset:
    input:
        **stage_inputs("synthesize_videos"),
    output:
        videos=directory(RAW_VIDEOS),
        annotations=directory(RAW_ANNOTATIONS),
        masks=directory(RAW_MASKS),
    params:
        file=PARAMS,  # the params file the command reads (what it reads from it: input params_file)
    threads: job_threads(config, "synthesize_videos")
    resources:
        **job_resources(config, "synthesize_videos"),
    log:
        "logs/synthesize_videos/{dataset}.log",
    shell:
        "aqa synthesize-videos --params {params.file} --log {log} --dataset {wildcards.dataset}"
        " --videos {output.videos} --annotations {output.annotations} --masks {output.masks}"


rule extract_frames_video:
    input:
        video=f"{RAW_VIDEOS}/{{video}}.mp4",
        annotations=RAW_ANNOTATIONS,
        annotation_files=raw_annotation_files,
        **stage_inputs("extract_frames"),
    output:
        directory(f"{FRAMES}/{{video}}"),
    params:
        file=PARAMS,  # the params file the command reads (what it reads from it: input params_file)
        root=FRAMES,
    threads: job_threads(config, "extract_frames")
    resources:
        **job_resources(config, "extract_frames"),
    log:
        "logs/extract_frames/{dataset}/{video}.log",
    shell:
        "aqa extract-frames --params {params.file} --log {log} --dataset {wildcards.dataset}"
        " --video {input.video} --annotations {input.annotations} --out {params.root}"


rule extract_frames_dataset:
    input:
        videos_to_cut,
    output:
        touch(f"{FRAMES}/.extract_frames.done"),


rule convert_annotations_dataset:
    input:
        annotations=RAW_ANNOTATIONS,
        annotation_files=raw_annotation_files,
        **stage_inputs("convert_annotations"),
    output:
        directory(ANNOTATIONS),
    params:
        file=PARAMS,  # the params file the command reads (what it reads from it: input params_file)
    log:
        "logs/convert_annotations/{dataset}.log",
    shell:
        "aqa convert-annotations --params {params.file} --log {log} --dataset {wildcards.dataset}"
        " --annotations {input.annotations} --out {output}"


rule synthesize_videos:
    input:
        expand(RAW_VIDEOS, dataset=DATASETS),


rule extract_frames:
    input:
        expand(rules.extract_frames_dataset.output, dataset=DATASETS),


rule convert_annotations:
    input:
        expand(ANNOTATIONS, dataset=DATASETS),
