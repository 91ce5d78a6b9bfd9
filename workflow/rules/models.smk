# Training (one folder per variant, one run per seed) and multi-exemplar evaluation.


rule train_variant:
    input:
        features=FEATURES,
        annotations=ANNOTATIONS,
    output:
        directory(f"{MODELS}/{{variant}}"),
    wildcard_constraints:
        variant="|".join(trained_variants()),
    params:
        section=config["train"],
    log:
        "logs/train/{variant}.log",
    shell:
        "{AQA} train --params {PARAMS} --log {log} --variant {wildcards.variant}"
        " --features {input.features} --annotations {DIVES} --out {output}"


rule train:
    input:
        expand(f"{MODELS}/{{variant}}", variant=trained_variants()),


rule evaluate_variant:
    input:
        models=f"{MODELS}/{{name}}",
        features=FEATURES,
        annotations=ANNOTATIONS,
    output:
        metrics=f"{METRICS}/{{name}}.json",
        predictions=directory(f"{PREDICTIONS}/{{name}}"),
    wildcard_constraints:
        name="|".join(trained_variants()),
    params:
        section=config["evaluate"],
    log:
        "logs/evaluate/{name}.log",
    shell:
        "{AQA} evaluate --params {PARAMS} --log {log} --variant {wildcards.name}"
        " --models {input.models} --features {input.features} --annotations {DIVES}"
        " --metrics {output.metrics} --predictions {output.predictions}"


rule evaluate:
    input:
        expand(f"{METRICS}/{{name}}.json", name=trained_variants()),
