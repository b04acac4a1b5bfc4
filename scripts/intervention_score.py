"""Score every generation of an accuracy experiment with the one shared extractor."""

from anchorflow.io import read_json, write_jsonl, write_tsv
from anchorflow.scoring import score_rows, summarise
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
rows = []
for path in snakemake.input.shards:
    rows += read_json(path)["rows"]
scored = score_rows(rows, snakemake.params.extractor)
log.info("scored %d generations", len(scored))
write_jsonl(snakemake.output.scored, sorted(scored, key=lambda r: (r["condition"], r["item_id"])))
write_tsv(snakemake.output.accuracy, summarise(scored, ["condition"]))
