# The engine: how each output of the pipeline is made. Stage logic lives in `src/aqa`;
# rules only pass paths and params to the `aqa` command. `snakemake -c2 <stage>` runs one
# stage (and what it needs); `snakemake -c2` runs everything. DVC (dvc.yaml) runs one target
# of this file per stage. Pass another params file with `--configfile FILE`: `config` is that
# file (default params.yaml) as aqa.params reads and validates it (workflow/rules/common.smk).
# Every job's inputs hold its stage's code files and a file of the params values it reads, as
# dvc.yaml lists them (common.smk), so `snakemake -n` and `dvc status` call the same stages stale.
# Settings every run uses: profiles/default (Snakemake finds it there by itself).
#
# `snakemake --lint` names one thing per rule, "Specify a conda environment or container for each
# rule": deliberately none. Every rule runs the `aqa` of the project's one environment (.venv, exact
# pins in requirements.txt, mirrored by environment.yml), which DVC's stages run too; a per-rule
# environment would be a second copy of it to keep in step. tests/unit/workflow/test_lint.py fails
# on any other finding.

from snakemake.utils import min_version

min_version("9.0")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/report.smk"


# Small jobs run where Snakemake runs, never submitted to a cluster (fetch_i3d downloads, which
# compute nodes often cannot). Every other rule that runs a command asks the cluster for what
# params' `cluster` section gives its stage (aqa.cluster; docs/CLUSTER.md).
localrules:
    convert_annotations_dataset,
    fetch_i3d,
    make_report,
    make_figures,


rule all:
    default_target: True
    input:
        rules.make_report.output,
        rules.make_figures.output,
