"""Label one trace's dataset chunks: from the dataset, or with Claude (cached, retried)."""

from anchorflow.labels import label_trace_file
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])  # noqa: F821
label_trace_file(
    snakemake.input.records,  # noqa: F821
    snakemake.wildcards.rollouts,  # noqa: F821
    snakemake.wildcards.trace,  # noqa: F821
    snakemake.output[0],  # noqa: F821
    dict(snakemake.params.labelling),  # noqa: F821
    dict(snakemake.params.client),  # noqa: F821
    log,
)
