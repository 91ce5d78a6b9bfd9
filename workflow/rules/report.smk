# The papers' tables from every dataset's metrics.

TABLE_FILES = expand(f"{TABLES}/finediving_table{{n}}.{{ext}}", n=[2, 3, 4], ext=["md", "csv", "tex"]) + expand(
    f"{TABLES}/mtl_aqa.{{ext}}", ext=["md", "csv", "tex"]
) + expand(f"{TABLES}/fineparser_table{{n}}.{{ext}}", n=[1, 2, 3, 4, 5], ext=["md", "csv", "tex"])


rule make_report:
    input:
        rules.evaluate.input,
        **stage_inputs("make_report"),
    output:
        TABLE_FILES,
    params:
        file=PARAMS,  # the params file the command reads (what it reads from it: input params_file)
        out=lambda wildcards, output: os.path.dirname(output[0]),
    log:
        "logs/make_report/make_report.log",
    shell:
        "aqa make-report --params {params.file} --log {log} --metrics reports/metrics --out {params.out}"


# Figures of every variant, the flat data of DVC's plots and the compact summary DVC's metrics show
# (aqa.report.figures): from the training histories, the test predictions and the metrics.
rule make_figures:
    input:
        rules.evaluate.input,
        all_trained(f"{MODELS}/{{name}}/.train.done"),
        all_trained(f"{PREDICTIONS}/{{name}}"),
        **stage_inputs("make_figures"),
    output:
        figures=directory(FIGURES),
        plots=directory(PLOTS),
        summary=directory(SUMMARY),
    params:
        file=PARAMS,  # the params file the command reads (what it reads from it: input params_file)
    log:
        "logs/make_figures/make_figures.log",
    shell:
        "aqa make-figures --params {params.file} --log {log} --metrics reports/metrics --predictions reports/predictions"
        " --models models --figures {output.figures} --plots {output.plots} --summary {output.summary}"
