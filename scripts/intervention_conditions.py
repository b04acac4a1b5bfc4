"""Rule intervention_conditions: resolve every intervention condition (receiver and matched
random heads, patched sentences)."""

from anchorflow.data.rollouts import read_records
from anchorflow.interventions.resolve import resolve_conditions
from anchorflow.io import read_tsv, write_json
from anchorflow.models.loading import load_config
from anchorflow.workflow import log_to

log_to(snakemake.log[0])
model_config = load_config(snakemake.params.model)
records = [
    record
    for record in read_records(snakemake.input.records)
    if record["rollouts"] == snakemake.params.rollouts
]
document = resolve_conditions(
    snakemake.params.interventions,
    snakemake.wildcards.model,
    model_config.num_hidden_layers,
    model_config.num_attention_heads,
    read_tsv(snakemake.input.receivers),
    read_tsv(snakemake.input.scores),
    records,
)
write_json(snakemake.output[0], document)
