"""Rule suppression_matrix: one trace -> the sentence-to-sentence suppression KL matrix."""

import torch
from tqdm import tqdm

from anchorflow.io import read_json, read_tsv, write_npz
from anchorflow.models import load_model, model_metadata
from anchorflow.rollouts import get_record
from anchorflow.suppression import (
    CONVENTIONS,
    KLSettings,
    result_arrays,
    suppression_heads,
    suppression_matrix,
    trace_inputs,
)
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
spec = snakemake.params.model
settings = snakemake.params.settings
trace = snakemake.wildcards.trace
tokens = read_json(snakemake.input.tokens)
record = get_record(snakemake.input.records, spec["rollouts"], trace)
model, tokenizer = load_model(spec)
ids, spans = trace_inputs(tokenizer, record, tokens)
receivers = read_tsv(snakemake.input.heads) if snakemake.input.heads else None
heads = suppression_heads(model, settings["heads"], receivers)
kl = KLSettings(settings["kl_mode"], settings["temperature"], settings["top_p"], settings["max_k"])
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
write_npz(snakemake.output[0], metadata, **result_arrays(result))
log.info(
    "wrote log_kl %s, %d sentences not suppressed",
    result.log_kl.shape,
    metadata["n_not_suppressed"],
)
