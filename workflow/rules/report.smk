# The paper's tables from every variant's metrics.

TABLE_FILES = expand(
    f"{TABLES}/finediving_table{{n}}.{{ext}}", n=[2, 3, 4], ext=["md", "csv", "tex"]
)


rule make_report:
    input:
        rules.evaluate.input,
    output:
        TABLE_FILES,
    params:
        section=config["make_report"],
    log:
        "logs/make_report/make_report.log",
    shell:
        "{AQA} make-report --params {PARAMS} --log {log} --metrics {METRICS} --out {TABLES}"
