"""Rule suppression_receiver_heads: KL at the final position when only the receiver heads are
suppressed, for each trace's highest- and lowest-scoring sentence
(:mod:`anchorflow.suppression.receivers`)."""

import torch
from tqdm import tqdm

from anchorflow.data.rollouts import get_record
from anchorflow.gpu_slots import assign_gpus
from anchorflow.io import read_json, read_tsv, write_tsv
from anchorflow.models.loading import load_model
from anchorflow.suppression.matrix import suppression_heads
from anchorflow.suppression.receivers import final_position_kl, with_high_low_ratio
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
log.info("GPU slot: %s", assign_gpus(int(getattr(snakemake.resources, "gpu", 0))))
torch.set_num_threads(snakemake.threads)
spec = snakemake.params.model
scores = read_tsv(snakemake.input.scores)
model, tokenizer = load_model(spec)
heads = suppression_heads(model, "receivers", read_tsv(snakemake.input.heads))
rows = []
traces = list(zip(snakemake.input.tokens, snakemake.params.traces, strict=True))
for path, trace in tqdm(traces, desc="traces", unit="trace"):
    record = get_record(snakemake.input.records, spec["rollouts"], trace)
    score = scores[scores["trace"] == trace].sort_values("sentence")["receiver_score"].to_numpy()
    rows += final_position_kl(
        model, tokenizer, heads, record, read_json(path), score, snakemake.params.settings
    )
    log.info("%s: %s", trace, rows[-2:])
write_tsv(snakemake.output[0], with_high_low_ratio(rows))
