"""Rule receiver_heads: every trace's vertical scores -> kurtosis, top-k heads, reliability,
per-sentence receiver-head scores."""

from pathlib import Path

from tqdm import tqdm

from anchorflow.io import read_json, read_npz, write_json, write_tsv
from anchorflow.receivers.analysis import (
    analyse_receivers,
    kurtosis_table,
    receiver_heads_table,
    receiver_score_table,
    receiver_summary,
    reliability_table,
)
from anchorflow.receivers.heads import check_vertical_parameters
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
settings = snakemake.params.statistics
vertical_settings = {key: settings[key] for key in ("proximity_ignore", "control_depth")}
vertical, chunk_indices = {}, {}
for attention, sentences in tqdm(
    list(zip(snakemake.input.attention, snakemake.input.sentences, strict=True))
):
    trace = Path(attention).stem
    if Path(sentences).stem != trace:
        raise ValueError(f"attention and sentences files out of step: {attention}, {sentences}")
    arrays, metadata = read_npz(attention)
    check_vertical_parameters(metadata, vertical_settings, attention)
    vertical[trace] = arrays["vertical_scores"]
    chunk_indices[trace] = read_json(sentences)["chunk_idx"]

analysis = analyse_receivers(
    vertical,
    top_k=settings["top_k"],
    exclude_layer0=settings["exclude_layer0"],
    n_bootstrap=settings["n_bootstrap"],
    seed=settings["seed"],
)
heads = receiver_heads_table(analysis)
reliability = reliability_table(
    analysis, settings["top_k"], settings["exclude_layer0"], settings["seed"]
)
log.info("%d traces; top heads:\n%s", len(analysis.traces), heads.head(5).to_string())
log.info("reliability:\n%s", reliability.T.to_string())
write_tsv(snakemake.output.kurtosis, kurtosis_table(analysis))
write_tsv(snakemake.output.heads, heads)
write_tsv(snakemake.output.reliability, reliability)
write_tsv(snakemake.output.scores, receiver_score_table(analysis, vertical, chunk_indices))
write_json(
    snakemake.output.summary,
    receiver_summary(analysis, reliability, snakemake.wildcards.model, settings),
)
