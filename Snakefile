from snakemake.utils import min_version

min_version("9.27")


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
