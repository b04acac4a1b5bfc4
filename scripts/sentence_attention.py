"""Rule sentence_attention: one trace -> vertical scores of every head (streamed attention)."""

import torch

from anchorflow.attention import trace_attention
from anchorflow.io import read_json, write_npz
from anchorflow.models import load_model, model_metadata
from anchorflow.rollouts import get_record
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
spec = snakemake.params.model
tokens = read_json(snakemake.input.tokens)
record = get_record(snakemake.input.records, spec["rollouts"], snakemake.wildcards.trace)
model, tokenizer = load_model(spec)
log.info("%s on %s: %d tokens", spec["name"], model.device, tokens["n_tokens"])
parameters = {
    "query_block": snakemake.params.query_block,
    "proximity_ignore": snakemake.params.proximity_ignore,
    "control_depth": snakemake.params.control_depth,
    "save_matrices": snakemake.params.save_matrices,
}
arrays = trace_attention(
    model, tokenizer, record["full_cot"], tokens["token_spans"], tokens["n_tokens"], **parameters
)
metadata = {
    "trace": snakemake.wildcards.trace,
    "model": model_metadata(spec),
    "n_tokens": tokens["n_tokens"],
    "token_rule": tokens["rule"],
    "layers": model.config.num_hidden_layers,
    "heads": model.config.num_attention_heads,
    "params": parameters,
}
write_npz(snakemake.output[0], metadata, **arrays)
log.info("wrote %s", ", ".join(f"{k} {v.shape}" for k, v in sorted(arrays.items())))
