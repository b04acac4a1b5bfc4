"""Rule suppression_matrix: one shard of traces -> each trace's sentence-to-sentence suppression
KL matrix, with one model load."""

import functools
from pathlib import Path

import torch
from tqdm import tqdm

from anchorflow.gpu_slots import assign_gpus
from anchorflow.io import read_json, read_tsv, write_npz
from anchorflow.models.loading import load_model, model_metadata
from anchorflow.shards import file_digest, npz_loads, run_shard, shard_traces
from anchorflow.suppression.divergence import KLSettings
from anchorflow.suppression.matrix import (
    CONVENTIONS,
    result_arrays,
    suppression_heads,
    suppression_matrix,
    trace_inputs,
)
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
log.info("GPU slot: %s", assign_gpus(int(getattr(snakemake.resources, "gpu", 0))))
torch.set_num_threads(snakemake.threads)
spec = snakemake.params.model
settings = snakemake.params.settings
traces = list(snakemake.params.traces)
receivers = read_tsv(snakemake.input.heads) if snakemake.input.heads else None
kl = KLSettings(settings["kl_mode"], settings["temperature"], settings["top_p"], settings["max_k"])
tokens_files, records, keys = shard_traces(
    "suppression",
    settings,
    spec,
    traces,
    snakemake.input.tokens,
    snakemake.input.records,
    heads=file_digest(snakemake.input.heads) if snakemake.input.heads else None,
)
model_and_tokenizer = functools.cache(lambda: load_model(spec))


def compute(trace: str, path: Path) -> None:
    model, tokenizer = model_and_tokenizer()
    tokens = read_json(tokens_files[trace])
    ids, spans = trace_inputs(tokenizer, records[trace], tokens)
    heads = suppression_heads(model, settings["heads"], receivers)
    log.info("%s on %s: %d tokens, %d sentences", trace, model.device, len(ids), len(spans))
    with tqdm(total=len(spans), desc="suppressed sentences") as bar:
        result = suppression_matrix(
            model,
            ids,
            spans,
            kl,
            heads=heads,
            batch_size=settings["batch_size"],
            query_block=settings["query_block"],
            max_tokens=settings["max_tokens"],
            progress=bar.update,
        )
    metadata = {
        "trace": trace,
        "model": model_metadata(spec),
        "token_rule": tokens["rule"],
        "n_tokens": result.n_tokens,
        "n_tokens_full": len(ids),
        "n_sentences": len(spans),
        "n_not_suppressed": int((~result.suppressed).sum()),
        "heads": settings["heads"],
        "head_pairs": [] if heads is None else receivers[["layer", "head"]].to_numpy().tolist(),
        "batch_size_used": result.batch_size,
        "query_block_used": result.query_block,
        "n_oom_retries": result.n_oom_retries,
        "conventions": CONVENTIONS,
        "params": settings,
    }
    write_npz(path, metadata, **result_arrays(result))
    log.info(
        "%s: log_kl %s, %d not suppressed", trace, result.log_kl.shape, metadata["n_not_suppressed"]
    )


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
