import sys
from pathlib import Path

from snakemake.utils import min_version

# 9.20: between-workflow caching of a rule with several named outputs (acquire_rollouts).
# branch()/lookup() and --replace-workflow-config are older. Dry runs of the paper and demo
# configs pass with 9.20.0 and fail with 9.19.0.
min_version("9.20")

# The anchorflow package beside this Snakefile is what the workflow and every job import, whether
# or not it is pip-installed: a conda env (envs/*.yaml) holds only third-party packages, and
# jobs (local or on a cluster node) inherit this PYTHONPATH.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from anchorflow.workflow import export_package_path

export_package_path(Path(workflow.basedir) / "src")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/report.smk"
include: "rules/common_labels.smk"
include: "rules/labels.smk"
include: "rules/common_receivers.smk"
include: "rules/receivers.smk"
include: "rules/common_attention.smk"
include: "rules/attention.smk"
include: "rules/common_interventions.smk"
include: "rules/interventions.smk"
include: "rules/common_suppression.smk"
include: "rules/suppression.smk"
include: "rules/explorer.smk"


rule all:
    default_target: True
    input:
        rules.data_all.input,
        rules.report_all.input,
        rules.labels_all.input,
        rules.attention_all.input,
        rules.receivers_all.input,
        rules.interventions_all.input,
        rules.suppression_all.input,
        rules.explorer.output.index,
