"""Rule split_sentences: one trace's record -> sentences, character spans, boundary report."""

from anchorflow.data.rollouts import get_record
from anchorflow.io import write_json
from anchorflow.sentences import sentence_record
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
wildcards = snakemake.wildcards
record = get_record(snakemake.input.records, wildcards.rollouts, wildcards.trace)
result = sentence_record(record["full_cot"], snakemake.params.variant)
result.update(
    trace=wildcards.trace,
    rollouts=wildcards.rollouts,
    params={"variant": snakemake.params.variant},
)
log.info(
    "%s/%s: %d sentences (%s variant)",
    wildcards.rollouts,
    wildcards.trace,
    len(result["sentences"]),
    snakemake.params.variant,
)
write_json(snakemake.output[0], result)
