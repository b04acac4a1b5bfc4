"""Rule whitebox_blackbox: receiver scores (with and without depth control) against every
black-box importance of the dataset -> per-sentence table, Spearman rho pooled with a trace
bootstrap, per trace and per category, and a figure."""

from pathlib import Path

import pandas as pd

from anchorflow.data.rollouts import read_records
from anchorflow.io import (
    markdown_table,
    read_json,
    read_npz,
    read_tsv,
    write_csv,
    write_text,
    write_tsv,
)
from anchorflow.plots import save_figure
from anchorflow.plots.blackbox import blackbox_figure
from anchorflow.receivers.blackbox import (
    SCORE_COLUMNS,
    blackbox_metrics,
    correlation_table,
    per_trace_table,
    sentence_table,
)
from anchorflow.receivers.categories import sentence_categories
from anchorflow.receivers.heads import receiver_scores
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
params = snakemake.params
heads = read_tsv(snakemake.input.heads)[["layer", "head"]].to_numpy()[: params.top_k]
records = {
    r["trace"]: r for r in read_records(snakemake.input.records) if r["rollouts"] == params.rollouts
}
metrics = blackbox_metrics(records.values())
frames = []
for attention, sentences, labels in zip(
    snakemake.input.attention, snakemake.input.sentences, snakemake.input.labels, strict=True
):
    trace = Path(attention).stem
    if Path(sentences).stem != trace or Path(labels).stem != trace:
        raise ValueError(f"attention, sentences and labels out of step at {attention}")
    arrays = read_npz(attention)[0]
    chunk_idx = read_json(sentences)["chunk_idx"]
    scores = {name: receiver_scores(arrays[key], heads) for name, key in SCORE_COLUMNS.items()}
    categories = sentence_categories(read_json(labels)["chunks"], chunk_idx)
    frames.append(
        sentence_table(trace, chunk_idx, categories, scores, records[trace]["labels"], metrics)
    )
table = pd.concat(frames, ignore_index=True)
per_trace = per_trace_table(table, list(SCORE_COLUMNS), metrics)
correlations = correlation_table(
    table, list(SCORE_COLUMNS), metrics, params.n_bootstrap, params.seed, per_trace
)
log.info("%d sentences, %d traces, metrics: %s", len(table), len(records), ", ".join(metrics))
write_tsv(snakemake.output.sentences, table)
write_tsv(snakemake.output.per_trace, per_trace)
write_tsv(snakemake.output.correlations, correlations)
pooled = correlations[correlations["scope"] == "all"].drop(columns=["scope", "group"])
write_text(snakemake.output.markdown, markdown_table(pooled))
figure, data = blackbox_figure(table, per_trace, params.figure_score, params.figure_metric)
save_figure(figure, snakemake.output.png, snakemake.output.pdf)
write_csv(snakemake.output.data, data)
