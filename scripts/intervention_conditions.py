"""Resolve every intervention condition (receiver and matched random heads, patched sentences)."""

from transformers import AutoConfig

from anchorflow.data.rollouts import read_records
from anchorflow.interventions.conditions import build_conditions
from anchorflow.interventions.experiments import patching_problems
from anchorflow.interventions.patching import patching_conditions
from anchorflow.io import read_tsv, write_json
from anchorflow.models.loading import _location
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
params = {
    "model": snakemake.wildcards.model,
    "receivers": [list(h) for h in receivers],
    "receivers_source": source,
    "n_layers": n_layers,
    "n_heads": n_heads,
    "seed": section["seed"],
}
sentences = []
if section["patching"]["enabled"]:
    problems = patching_problems(
        [
            r
            for r in read_records(snakemake.input.records)
            if r["rollouts"] == snakemake.params.rollouts
        ],
        section["patching"]["traces"],
    )
    conditions["patching"], chosen = patching_conditions(
        section, read_tsv(snakemake.input.scores), problems
    )
    layer = section["patching"]["layer"]
    params["patch_layer"] = receivers[0][0] if layer is None else layer
    sentences = chosen.to_dict(orient="records")
    log.info(
        "patching at layer %d: anchors %s",
        params["patch_layer"],
        conditions["patching"]["anchor"]["sentences"],
    )
write_json(
    snakemake.output[0],
    {"conditions": conditions, "patching_sentences": sentences, "params": params},
)
