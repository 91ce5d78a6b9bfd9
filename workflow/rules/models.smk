# Training (one folder per variant, one run per seed) and multi-exemplar evaluation.


rule train_variant:
    input:
        features=rules.extract_features.output,
        annotations=ANNOTATIONS,
    output:
        # A flag, not the folder: checkpoints must survive an interrupted job (training
        # resumes from them, and starts afresh itself when its config changed).
        touch(f"{MODELS}/{{variant}}/.train.done"),
    wildcard_constraints:
        variant="|".join(trained_variants()),
    params:
        section=config["train"],
    threads: workflow.cores
    log:
        "logs/train/{variant}.log",
    shell:
        "{AQA} train --params {PARAMS} --log {log} --variant {wildcards.variant}"
        " --features {FEATURES} --annotations {DIVES} --out {MODELS}/{wildcards.variant}"


rule train:
    input:
        expand(f"{MODELS}/{{variant}}/.train.done", variant=trained_variants()),


rule evaluate_variant:
    input:
        trained=f"{MODELS}/{{name}}/.train.done",
        features=rules.extract_features.output,
        annotations=ANNOTATIONS,
    output:
        metrics=f"{METRICS}/{{name}}.json",
        predictions=directory(f"{PREDICTIONS}/{{name}}"),
    wildcard_constraints:
        name="|".join(trained_variants()),
    params:
        section=config["evaluate"],
    threads: workflow.cores
    log:
        "logs/evaluate/{name}.log",
    shell:
        "{AQA} evaluate --params {PARAMS} --log {log} --variant {wildcards.name}"
        " --models {MODELS}/{wildcards.name} --features {FEATURES} --annotations {DIVES}"
        " --metrics {output.metrics} --predictions {output.predictions}"


rule evaluate:
    input:
        expand(f"{METRICS}/{{name}}.json", name=trained_variants()),
