"""Agreement of Claude's labels with the dataset's: kappa, confusion matrix, per-category P/R."""

from anchorflow.data.rollouts import read_records
from anchorflow.io import read_json
from anchorflow.labels.agreement import write_agreement_report
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
documents = [read_json(path) for path in snakemake.input.anthropic]
wanted = {(doc["rollouts"], doc["trace"]) for doc in documents}
records = [
    record
    for record in read_records(snakemake.input.records)
    if (record["rollouts"], record["trace"]) in wanted
]
summary = write_agreement_report(
    records,
    documents,
    dict(snakemake.output),
    snakemake.wildcards.rollouts,
)
log.info("agreement: %s", summary)
