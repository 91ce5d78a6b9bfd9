# The backbone and the I3D feature cache (one per dataset).


rule fetch_i3d:
    input:
        **stage_inputs("fetch_i3d"),
    output:
        weights=f"{I3D}/kinetics400_rgb.pt",
        manifest=f"{I3D}/manifest.json",
    params:
        file=PARAMS,  # the params file the command reads (what it reads from it: input params_file)
        out=lambda wildcards, output: os.path.dirname(output.weights),
    log:
        "logs/fetch_i3d/fetch_i3d.log",
    shell:
        "aqa fetch-i3d --params {params.file} --log {log} --out {params.out}"


rule extract_features_dataset:
    input:
        frames=f"{FRAMES}/.extract_frames.done",
        annotations=ANNOTATIONS,
        weights=rules.fetch_i3d.output.weights,
        masks=RAW_MASKS,  # the stand-in's (empty with real frames); real masks are read in place
        **stage_inputs("extract_features"),
    output:
        # A flag, not the folder: Snakemake deletes a job's outputs before it runs, and the
        # cache must survive an interruption (the stage resumes and checks its own manifest).
        touch(f"{FEATURES}/.extract_features.done"),
    params:
        file=PARAMS,  # the params file the command reads (what it reads from it: input params_file)
        frames=lambda wildcards: frames_source(wildcards.dataset),
        masks=lambda wildcards: masks_source(wildcards.dataset),
        dives=DIVES,
        out=FEATURES,
        # where the cache is resumed and extended, renamed onto `out` when done (aqa.workdir)
        work=f".aqa/work/{FEATURES}",
    threads: job_threads(config, "extract_features")
    resources:
        **job_resources(config, "extract_features"),
    log:
        "logs/extract_features/{dataset}.log",
    shell:
        "aqa extract-features --params {params.file} --log {log} --frames {params.frames}"
        " --annotations {params.dives} --weights {input.weights} --out {params.out} --work {params.work}"
        " --dataset {wildcards.dataset} --masks {params.masks}"


rule extract_features:
    input:
        expand(rules.extract_features_dataset.output, dataset=DATASETS),
