# Training (one folder per dataset and variant, one run per seed) and evaluation.


rule train_variant:
    input:
        features=f"{FEATURES}/.extract_features.done",
        annotations=ANNOTATIONS,
        **stage_inputs("train"),
    output:
        # A flag, not the folder: checkpoints must survive an interrupted job (training
        # resumes from them, and starts afresh itself when its config changed).
        touch(f"{MODELS}/{{variant}}/.train.done"),
    wildcard_constraints:
        variant="|".join(sorted({n for d in DATASETS for n in trained_variants(d)})),
    params:
        file=PARAMS,  # the params file the command reads (what it reads from it: input params_file)
        features=lambda wildcards, input: os.path.dirname(input.features),
        dives=DIVES,
        out=f"{MODELS}/{{variant}}",
        # where seeds train and resume, renamed onto `out` when all are done (aqa.workdir)
        work=f".aqa/work/{MODELS}/{{variant}}",
        # read with train.backbone: finetune (the feature cache's frames and weights)
        frames=lambda wildcards: frames_source(wildcards.dataset),
        weights=f"{I3D}/kinetics400_rgb.pt",
        masks=lambda wildcards: masks_source(wildcards.dataset),   # FineParser's, with train.backbone: finetune
    threads: job_threads(config, "train")
    resources:
        **job_resources(config, "train"),
    log:
        "logs/train/{dataset}/{variant}.log",
    shell:
        "aqa train --params {params.file} --log {log} --variant {wildcards.variant}"
        " --features {params.features} --annotations {params.dives} --out {params.out}"
        " --frames {params.frames} --weights {params.weights} --masks {params.masks} --work {params.work}"


rule train:
    input:
        all_trained(f"{MODELS}/{{name}}/.train.done"),


rule evaluate_variant:
    input:
        trained=f"{MODELS}/{{name}}/.train.done",
        features=f"{FEATURES}/.extract_features.done",
        annotations=ANNOTATIONS,
        **stage_inputs("evaluate"),
    output:
        metrics=f"{METRICS}/{{name}}.json",
        predictions=directory(f"{PREDICTIONS}/{{name}}"),
    wildcard_constraints:
        name="|".join(sorted({n for d in DATASETS for n in trained_variants(d)})),
    params:
        file=PARAMS,  # the params file the command reads (what it reads from it: input params_file)
        models=lambda wildcards, input: os.path.dirname(input.trained),
        features=lambda wildcards, input: os.path.dirname(input.features),
        dives=DIVES,
        frames=lambda wildcards: frames_source(wildcards.dataset),   # read with train.backbone: finetune
        masks=lambda wildcards: masks_source(wildcards.dataset),   # FineParser's, with train.backbone: finetune
    threads: job_threads(config, "evaluate")
    resources:
        **job_resources(config, "evaluate"),
    log:
        "logs/evaluate/{dataset}/{name}.log",
    shell:
        "aqa evaluate --params {params.file} --log {log} --variant {wildcards.name}"
        " --models {params.models} --features {params.features} --annotations {params.dives}"
        " --metrics {output.metrics} --predictions {output.predictions} --frames {params.frames}"
        " --masks {params.masks}"


rule evaluate:
    input:
        all_trained(f"{METRICS}/{{name}}.json"),
