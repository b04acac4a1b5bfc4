"""Resolve every intervention condition (receiver and matched random heads) of the config."""

from transformers import AutoConfig

from anchorflow.interventions import build_conditions
from anchorflow.io import read_tsv, write_json
from anchorflow.models import _location
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
section = snakemake.params.interventions
location, kwargs = _location(snakemake.params.model)
model_config = AutoConfig.from_pretrained(location, **kwargs)
n_layers, n_heads = model_config.num_hidden_layers, model_config.num_attention_heads
excluded_layers = set(section["receiver_heads"]["exclude_layers"])
if section["receiver_heads"]["heads"]:
    receivers = [tuple(head) for head in section["receiver_heads"]["heads"]]
    source = "config"
else:
    ranked = read_tsv(snakemake.input.receivers).sort_values("rank")
    receivers = [
        (int(row.layer), int(row.head))
        for row in ranked.itertuples()
        if int(row.layer) not in excluded_layers
    ]
    source = "receiver_heads.tsv"
log.info(
    "%d receiver heads from %s; model has %d layers x %d heads",
    len(receivers),
    source,
    n_layers,
    n_heads,
)
conditions = build_conditions(section, receivers, n_layers, n_heads)
write_json(
    snakemake.output[0],
    {
        "conditions": conditions,
        "params": {
            "model": snakemake.wildcards.model,
            "receivers": [list(h) for h in receivers],
            "receivers_source": source,
            "n_layers": n_layers,
            "n_heads": n_heads,
            "seed": section["seed"],
        },
    },
)
