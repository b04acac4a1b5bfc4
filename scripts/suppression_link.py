"""Rule suppression_link: suppression matrices + receiver scores + dataset importance ->
per-sentence suppression importance, Spearman correlations (all, per trace, per category)."""

from pathlib import Path

import pandas as pd

from anchorflow.data.rollouts import get_record
from anchorflow.io import read_json, read_npz, read_tsv, write_csv, write_tsv
from anchorflow.plots import save_figure
from anchorflow.plots.suppression import correlation_table, link_table, plot_link
from anchorflow.receivers.categories import sentence_categories
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
rollouts = snakemake.params.rollouts
scores = read_tsv(snakemake.input.scores)
labels = {Path(path).stem: read_json(path)["chunks"] for path in snakemake.input.labels}
frames = []
for path in snakemake.input.matrices:
    trace = Path(path).stem
    log_kl = read_npz(path)[0]["log_kl"]
    rows = scores[scores["trace"] == trace].sort_values("sentence")
    if rows["sentence"].tolist() != list(range(len(log_kl))):
        raise ValueError(f"{trace}: receiver scores do not cover sentences 0..{len(log_kl) - 1}")
    chunk_idx = rows["chunk_idx"].tolist()
    record = get_record(snakemake.input.records, rollouts, trace)
    frames.append(
        link_table(
            trace,
            log_kl,
            chunk_idx,
            sentence_categories(labels[trace], chunk_idx),
            rows["receiver_score"].to_numpy(),
            record["labels"],
            snakemake.params.min_distance,
        )
    )
linked = pd.concat(frames, ignore_index=True)
correlations = correlation_table(linked)
log.info("%d sentences, %d correlation rows", len(linked), len(correlations))
write_tsv(snakemake.output.importance, linked)
write_tsv(snakemake.output.correlations, correlations)
write_csv(snakemake.output.data, correlations)
save_figure(plot_link(linked, correlations), snakemake.output.png, snakemake.output.pdf)
