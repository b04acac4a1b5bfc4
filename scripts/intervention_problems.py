"""Choose the accuracy experiments' problems: candidates from the configured source, sampled at
baseline when selection_samples > 0 and kept when their accuracy lies in the configured range."""

import torch

from anchorflow.data.problem_sets import candidate_problems, choose_problems, read_generated
from anchorflow.data.rollouts import read_records
from anchorflow.gpu_slots import assign_gpus
from anchorflow.interventions.decode import SamplingSettings, adds_special_tokens, generate
from anchorflow.interventions.experiments import problem_items
from anchorflow.interventions.prompts import problem_prompt
from anchorflow.interventions.scoring import score_rows
from anchorflow.io import read_json, write_json, write_tsv
from anchorflow.models.loading import load_model, model_metadata
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
params = snakemake.params.generation
section = params["problems"]
inputs = snakemake.input.keys()
records = read_records(snakemake.input.records) if "records" in inputs else []
records = [record for record in records if record["rollouts"] == snakemake.params.rollouts]
candidates = candidate_problems(
    section,
    records=records,
    selected=read_json(snakemake.input.selected) if "selected" in inputs else [],
    generated=read_generated(snakemake.input.generated) if "generated" in inputs else [],
)
log.info("%d candidate problems from source %s", len(candidates), section["source"])
scored, sampling = [], None
if section["selection_samples"]:
    log.info("GPU slot: %s", assign_gpus(int(getattr(snakemake.resources, "gpu", 0))))
    torch.set_num_threads(snakemake.threads)
    model, tokenizer = load_model(snakemake.params.model, attn_implementation="sdpa")
    sampling = SamplingSettings.from_params(params)
    prompts = [
        problem_prompt(
            problem, params["prompt_format"], tokenizer, section["prefix"], params["instruction"]
        )
        for problem in candidates
    ]
    items = problem_items(
        candidates, prompts, section["selection_samples"], (params["seed"], "selection")
    )
    rows = generate(
        model,
        tokenizer,
        items,
        sampling,
        add_special_tokens=adds_special_tokens(params["prompt_format"]),
    )
    scored = score_rows(rows, params["extractor"])
chosen, table = choose_problems(
    candidates, scored, section["accuracy_min"], section["accuracy_max"], section["n_problems"]
)
log.info("kept %d of %d candidates", len(chosen), len(candidates))
write_tsv(snakemake.output.selection, table)
write_json(
    snakemake.output.problems,
    {
        "params": {
            "problems": section,
            "sampling": sampling.to_dict() if sampling else None,
            "prompt_format": params["prompt_format"],
            "instruction": params["instruction"],
            "extractor": params["extractor"],
            "seed": params["seed"],
            "model": model_metadata(snakemake.params.model) if sampling else None,
            "n_candidates": len(candidates),
            "n_kept": len(chosen),
        },
        "problems": chosen,
    },
)
