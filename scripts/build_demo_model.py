"""Rule build_demo_model: demo traces' full_cot -> tiny Qwen2 model with a planted receiver head."""

import torch

from anchorflow.data.rollouts import read_records
from anchorflow.models.demo import build_demo_model
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
texts = [
    record["full_cot"]
    for record in read_records(snakemake.input.records)
    if record["rollouts"] == snakemake.params.rollouts
]
log.info("training the demo tokenizer on %d traces", len(texts))
planted = build_demo_model(snakemake.output[0], texts, **snakemake.params.demo)
log.info("planted receiver head: layer %d, head %d", planted["layer"], planted["head"])
