# The papers' tables from every dataset's metrics.

TABLE_FILES = expand(f"{TABLES}/finediving_table{{n}}.{{ext}}", n=[2, 3, 4], ext=["md", "csv", "tex"]) + expand(
    f"{TABLES}/mtl_aqa.{{ext}}", ext=["md", "csv", "tex"]
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
        "{AQA} make-report --params {PARAMS} --log {log} --metrics reports/metrics --out {TABLES}"
