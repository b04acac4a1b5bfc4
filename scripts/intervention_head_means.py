"""Mean o_proj input per head over reference traces (for mean ablation)."""

import torch

from anchorflow.data.rollouts import read_records
from anchorflow.gpu_slots import assign_gpus
from anchorflow.interventions.heads import compute_head_means
from anchorflow.interventions.prompts import build_prompt
from anchorflow.io import write_npz
from anchorflow.models.loading import load_model, model_metadata
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
log.info("GPU slot: %s", assign_gpus(int(getattr(snakemake.resources, "gpu", 0))))
torch.set_num_threads(snakemake.threads)
params = snakemake.params
model, tokenizer = load_model(params.model)
records = [r for r in read_records(snakemake.input.records) if r["rollouts"] == params.rollouts]
records = records[: params.settings["max_traces"]]
if not records:
    raise ValueError(f"no reference traces of {params.rollouts!r} to average over")
batches = []
for record in records:
    prompt = build_prompt(record["problem_text"], params.prompt_format, tokenizer)
    text = prompt + record["solution"]
    batches.append(
        tokenizer(
            text,
            return_tensors="pt",
            truncation=True,
            max_length=params.settings["max_tokens"],
            add_special_tokens=params.prompt_format == "raw",
        ).to(model.device)
    )
means, n_tokens = compute_head_means(model, batches)
log.info("averaged %d tokens of %d traces", n_tokens, len(records))
write_npz(
    snakemake.output[0],
    {
        "model": model_metadata(params.model),
        "traces": [r["trace"] for r in records],
        "n_tokens": n_tokens,
        "prompt_format": params.prompt_format,
        **params.settings,
    },
    means=means,
)
