"""Rule suppression_receiver_heads: KL at the final position when only the receiver heads are
suppressed, for each trace's highest- and lowest-scoring sentence (cf. ARENA's 217x example).
The KL is the full-vocabulary one, as ARENA's: at a single position the nucleus emulation's -1e9
fill makes any token that leaves the baseline's nucleus dominate the value."""

import pandas as pd
import torch
from tqdm import tqdm

from anchorflow.data.rollouts import get_record
from anchorflow.gpu_slots import assign_gpus
from anchorflow.io import read_json, read_tsv, write_tsv
from anchorflow.models.loading import load_model
from anchorflow.suppression.divergence import KLSettings
from anchorflow.suppression.matrix import (
    cut_trace,
    extreme_sentences,
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
kl = KLSettings("full", settings["temperature"])
scores = read_tsv(snakemake.input.scores)
model, tokenizer = load_model(spec)
heads = suppression_heads(model, "receivers", read_tsv(snakemake.input.heads))
rows = []
traces = list(zip(snakemake.input.tokens, snakemake.params.traces, strict=True))
for path, trace in tqdm(traces, desc="traces", unit="trace"):
    tokens = read_json(path)
    record = get_record(snakemake.input.records, spec["rollouts"], trace)
    full_ids, full_spans = trace_inputs(tokenizer, record, tokens)
    ids, spans = cut_trace(full_ids, full_spans, settings["max_tokens"], model.device)
    n_tokens = len(ids)
    score = scores[scores["trace"] == trace].sort_values("sentence")["receiver_score"].to_numpy()
    chosen = extreme_sentences(score, (spans[:, 0] >= 1) & (spans[:, 0] < n_tokens))
    result = suppression_matrix(
        model,
        ids,
        spans,
        kl,
        heads=heads,
        sentences=list(chosen.values()),
        batch_size=settings["batch_size"],
        query_block=settings["query_block"],
    )
    for which, sentence in chosen.items():
        final_kl = float(result.token_kl[sentence, n_tokens - 1])
        rows.append(
            {
                "trace": trace,
                "which": which,
                "sentence": sentence,
                "receiver_score": float(score[sentence]),
                "final_position_kl": final_kl,
                "n_tokens": n_tokens,
            }
        )
    log.info("%s: %s", trace, rows[-2:])
table = pd.DataFrame(rows)
highest = table[table["which"] == "highest"].set_index("trace")["final_position_kl"]
lowest = table[table["which"] == "lowest"].set_index("trace")["final_position_kl"]
table["highest_over_lowest"] = table["trace"].map(highest / lowest)
write_tsv(snakemake.output[0], table)
