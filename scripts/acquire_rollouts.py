"""Rule acquire_rollouts: dataset source -> normalised records, manifest and exclusions."""

import pandas as pd

from anchorflow.data.rollouts import acquire, check_usable, exclusion_table, requested_traces
from anchorflow.io import write_jsonl, write_tsv
from anchorflow.workflow import log_to

log = log_to(snakemake.log.main)
params = snakemake.params
requests = requested_traces(params.rollouts, params.problems, params.correctness)
records, exclusions = acquire(params.source, requests, params.sampling_folder, params.format)
log.info(
    "requested %d traces: %d usable, %d excluded", len(requests), len(records), len(exclusions)
)
# Written before the check can stop the job: Snakemake removes a failed job's outputs, not its logs.
excluded = exclusion_table(exclusions)
write_tsv(snakemake.log.excluded, excluded)
check_usable(records, exclusions, params.strict, listing=snakemake.log.excluded)

write_tsv(snakemake.output.excluded, excluded)
write_tsv(
    snakemake.output.manifest,
    pd.DataFrame([(r["rollouts"], r["trace"]) for r in records], columns=["rollouts", "trace"]),
)
write_jsonl(snakemake.output.records, records)
