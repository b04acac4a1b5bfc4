"""Generate one shard of one (experiment, condition) under its head interventions."""

from anchorflow.generation import SamplingSettings, experiment_items, generate, shard
from anchorflow.interventions import specs_from_json
from anchorflow.io import read_json, read_npz, write_json
from anchorflow.models import load_model, model_metadata
from anchorflow.rollouts import read_records
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
params = snakemake.params.generation
wildcards = snakemake.wildcards
condition = read_json(snakemake.input.conditions)["conditions"][wildcards.experiment][
    wildcards.condition
]
interventions = specs_from_json(condition["interventions"])
head_means = None
if "head_means" in snakemake.input.keys():
    head_means = read_npz(snakemake.input.head_means)[0]["means"]
model, tokenizer = load_model(snakemake.params.model)
selected = read_json(snakemake.input.selected) if "selected" in snakemake.input.keys() else []
items = experiment_items(
    wildcards.experiment,
    params,
    wildcards.condition,
    tokenizer,
    read_records(snakemake.input.records),
    selected,
    snakemake.params.rollouts,
)
n_shards = params["experiment"]["shards"]
items = shard(items, int(wildcards.shard), n_shards)
settings = SamplingSettings(
    params["temperature"], params["top_p"], params["max_new_tokens"], params["batch_size"]
)
log.info(
    "%s/%s shard %s: %d items, %d interventions",
    wildcards.experiment,
    wildcards.condition,
    wildcards.shard,
    len(items),
    len(interventions),
)
# A chat template already starts with BOS; the raw prompt gets the tokenizer's special tokens.
add_special_tokens = params["prompt_format"] == "raw"
rows = generate(model, tokenizer, items, settings, interventions, head_means, add_special_tokens)
for row in rows:
    row["condition"] = wildcards.condition
write_json(
    snakemake.output[0],
    {
        "params": {
            "experiment": wildcards.experiment,
            "condition": wildcards.condition,
            "condition_spec": condition,
            "shard": int(wildcards.shard),
            "n_shards": n_shards,
            "sampling": settings.to_dict(),
            "prompt_format": params["prompt_format"],
            "prompt_example": items[0].prompt if items else None,
            "model": model_metadata(snakemake.params.model),
            "seed": params["seed"],
            "paired_seeds": params["paired_seeds"],
            "per_row_seeds": True,
            "add_special_tokens": add_special_tokens,
        },
        "rows": rows,
    },
)
