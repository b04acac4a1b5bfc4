"""Token usage per trace of the Claude labels of a rollouts folder."""

from anchorflow.io import read_json, write_tsv
from anchorflow.labels.usage import usage_table
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
table = usage_table([read_json(path) for path in snakemake.input])
write_tsv(snakemake.output[0], table)
log.info("usage of %d traces: %s", len(table), table.sum(numeric_only=True).to_dict())
