"""Label one trace's dataset chunks: from the dataset, or with Claude (cached, retried)."""

from anchorflow.labels.labeller import label_trace_file, transport_settings
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
label_trace_file(
    snakemake.input.records,
    snakemake.wildcards.rollouts,
    snakemake.wildcards.trace,
    snakemake.output[0],
    dict(snakemake.params.labelling),
    transport_settings(snakemake.config["labels"]),
    log,
)
