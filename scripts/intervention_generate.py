"""Generate one shard of one group of (experiment, condition)s under their interventions."""

import torch

from anchorflow.data.rollouts import read_records
from anchorflow.gpu_slots import assign_gpus
from anchorflow.interventions.attention_ops import AttentionOp
from anchorflow.interventions.conditions import condition_groups
from anchorflow.interventions.decode import (
    SamplingSettings,
    adds_special_tokens,
    generate,
    shard,
)
from anchorflow.interventions.experiments import experiment_items
from anchorflow.interventions.heads import specs_from_json
from anchorflow.interventions.patching import ResidualPatch
from anchorflow.interventions.triggers import Trigger
from anchorflow.io import read_json, read_npz, write_json
from anchorflow.models.loading import load_model, model_metadata
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
log.info("GPU slot: %s", assign_gpus(int(getattr(snakemake.resources, "gpu", 0))))
torch.set_num_threads(snakemake.threads)
params = snakemake.params.generation
wildcards = snakemake.wildcards
experiment = wildcards.experiment
resolved = read_json(snakemake.input.conditions)
conditions = resolved["conditions"][experiment]
group = condition_groups(list(conditions), params["conditions_per_job"])[int(wildcards.group)]
head_means = None
if "head_means" in snakemake.input.keys():
    head_means = read_npz(snakemake.input.head_means)[0]["means"]
# SDPA for generation (eager is kept for the attention stages, which read the weights).
model, tokenizer = load_model(snakemake.params.model, attn_implementation="sdpa")
problems = []
if "problems" in snakemake.input.keys():
    problems = read_json(snakemake.input.problems)["problems"]
records = read_records(snakemake.input.records)
n_shards = params["experiment"]["shards"]
settings = SamplingSettings.from_params(params, params["experiment"])
patch = None
if experiment == "patching":
    section = params["experiment"]
    patch = ResidualPatch(resolved["params"]["patch_layer"], section["mode"], section["strength"])
add_special_tokens = adds_special_tokens(params["prompt_format"])
rows, examples = [], {}
for condition in group:
    spec = conditions[condition]
    items = experiment_items(
        experiment, params, condition, tokenizer, problems, records, snakemake.params.rollouts, spec
    )
    items = shard(items, int(wildcards.shard), n_shards)
    interventions = specs_from_json(spec.get("interventions", []))
    attention = AttentionOp.from_dict(spec["attention"]) if "attention" in spec else None
    trigger = Trigger.from_dict(spec["trigger"]) if "trigger" in spec else None
    log.info(
        "%s/%s shard %s: %d items, %d head interventions, attention %s, trigger %s",
        experiment,
        condition,
        wildcards.shard,
        len(items),
        len(interventions),
        attention,
        trigger,
    )
    generated = generate(
        model,
        tokenizer,
        items,
        settings,
        interventions,
        head_means,
        add_special_tokens,
        patch,
        attention=attention,
        trigger=trigger,
    )
    rows += [{**row, "condition": condition} for row in generated]
    examples.setdefault("prompt_example", items[0].prompt if items else None)
write_json(
    snakemake.output[0],
    {
        "params": {
            "experiment": experiment,
            "group": int(wildcards.group),
            "conditions": {name: conditions[name] for name in group},
            "shard": int(wildcards.shard),
            "n_shards": n_shards,
            "sampling": settings.to_dict(),
            "prompt_format": params["prompt_format"],
            **examples,
            "model": model_metadata(snakemake.params.model),
            "seed": params["seed"],
            "paired_seeds": params["paired_seeds"],
            "per_row_seeds": True,
            "add_special_tokens": add_special_tokens,
            "patch": patch.to_dict() if patch else None,
        },
        "rows": rows,
    },
)
