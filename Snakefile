from snakemake.utils import min_version


min_version("9.27")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/report.smk"
include: "rules/common_labels.smk"
include: "rules/labels.smk"


rule all:
    default_target: True
    input:
        rules.data_all.input,
        rules.report_all.input,
        rules.labels_all.input,
