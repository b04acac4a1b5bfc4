"""Rule intervention_conditions: resolve every intervention condition (receiver and matched
random heads, patched sentences)."""

from anchorflow.data.rollouts import read_records
from anchorflow.interventions.resolve import resolve_conditions
from anchorflow.io import read_tsv, write_json
from anchorflow.models.loading import load_config
from anchorflow.workflow import log_to

log_to(snakemake.log[0])
model_config = load_config(snakemake.params.model)
inputs = snakemake.input
# Absent inputs: receiver heads given in the config; patching disabled (no scores, no records).
records = [
    record
    for record in (read_records(inputs.records) if "records" in inputs.keys() else [])
    if record["rollouts"] == snakemake.params.rollouts
]
document = resolve_conditions(
    snakemake.params.interventions,
    snakemake.wildcards.model,
    model_config.num_hidden_layers,
    model_config.num_attention_heads,
    read_tsv(inputs.receivers) if inputs.get("receivers") else None,
    read_tsv(inputs.scores) if "scores" in inputs.keys() else None,
    records,
)
write_json(snakemake.output[0], document)
