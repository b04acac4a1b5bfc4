"""Score every generation of an accuracy experiment; accuracy, failure modes and strata."""

import pandas as pd

from anchorflow.interventions.scoring import score_rows, summarise
from anchorflow.interventions.tables import failure_mode_table, strata_table
from anchorflow.io import read_json, write_jsonl, write_tsv
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
conditions = read_json(snakemake.input.conditions)["conditions"][snakemake.wildcards.experiment]
rows = []
for path in snakemake.input.shards:
    rows += read_json(path)["rows"]
scored = score_rows(rows, snakemake.params.extractor, snakemake.params.failure_modes)
log.info("scored %d generations of %d conditions", len(scored), len(conditions))
write_jsonl(snakemake.output.scored, sorted(scored, key=lambda r: (r["condition"], r["item_id"])))
write_tsv(snakemake.output.accuracy, summarise(scored, ["condition"]))
frame = pd.DataFrame(scored)
write_tsv(snakemake.output.failure_modes, failure_mode_table(frame, conditions))
write_tsv(
    snakemake.output.strata, strata_table(frame, conditions, snakemake.params.strata["tiers"])
)
