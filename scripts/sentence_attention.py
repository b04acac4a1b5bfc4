"""Rule sentence_attention: one shard of traces -> each trace's vertical scores of every head
(streamed attention), with one model load."""

import functools
from pathlib import Path

import torch

from anchorflow.attention import trace_attention
from anchorflow.gpu_slots import assign_gpus
from anchorflow.io import read_json, write_npz
from anchorflow.models.loading import load_model, model_metadata
from anchorflow.shards import npz_loads, run_shard, shard_traces
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
log.info("GPU slot: %s", assign_gpus(int(getattr(snakemake.resources, "gpu", 0))))
torch.set_num_threads(snakemake.threads)
spec = snakemake.params.model
traces = list(snakemake.params.traces)
parameters = {
    "query_block": snakemake.params.query_block,
    "proximity_ignore": snakemake.params.proximity_ignore,
    "control_depth": snakemake.params.control_depth,
    "save_matrices": snakemake.params.save_matrices,
}
tokens_files, records, keys = shard_traces(
    "attention", parameters, spec, traces, snakemake.input.tokens, snakemake.input.records
)
model_and_tokenizer = functools.cache(lambda: load_model(spec))


def compute(trace: str, path: Path) -> None:
    model, tokenizer = model_and_tokenizer()
    tokens = read_json(tokens_files[trace])
    log.info("%s on %s: %d tokens", trace, model.device, tokens["n_tokens"])
    arrays = trace_attention(
        model,
        tokenizer,
        records[trace]["full_cot"],
        tokens["token_spans"],
        tokens["n_tokens"],
        **parameters,
    )
    metadata = {
        "trace": trace,
        "model": model_metadata(spec),
        "n_tokens": tokens["n_tokens"],
        "token_rule": tokens["rule"],
        "layers": model.config.num_hidden_layers,
        "heads": model.config.num_attention_heads,
        "params": parameters,
    }
    write_npz(path, metadata, **arrays)


origin = run_shard(
    traces, keys, snakemake.output[0], snakemake.params.store, compute, npz_loads, log=log.info
)
log.info(
    "shard %s: %d traces, %d computed, %d from the store",
    snakemake.wildcards.shard,
    len(traces),
    sum(v == "computed" for v in origin.values()),
    sum(v == "stored" for v in origin.values()),
)
