# Data stages: stand-in footage, frames, Parquet annotations.


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
    """The frame folders of every synthesized video (known once the checkpoint has run)."""
    videos_dir = checkpoints.synthesize_videos.get().output.videos
    names = sorted(p.stem for p in Path(videos_dir).glob("*.mp4"))
    return expand(f"{FRAMES}/{{video}}", video=names)


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
