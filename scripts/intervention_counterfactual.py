"""Counterfactual importance per sentence under each condition, and by category."""

from anchorflow.data.rollouts import read_records
from anchorflow.interventions.counterfactual import (
    importance_by_category,
    importance_table,
    load_embedder,
)
from anchorflow.interventions.tables import counterfactual_controls
from anchorflow.io import markdown_table, read_json, write_csv, write_text, write_tsv
from anchorflow.models.loading import pick_device
from anchorflow.plots import save_figure
from anchorflow.plots.interventions import counterfactual_figure
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
params = snakemake.params.counterfactual
conditions = read_json(snakemake.input.conditions)["conditions"]["counterfactual"]
records = {
    r["trace"]: r
    for r in read_records(snakemake.input.records)
    if r["rollouts"] == params["rollouts"]
}
rows = []
for path in snakemake.input.shards:
    rows += read_json(path)["rows"]
embed = load_embedder(params["embedding_model"], device=str(pick_device()))
per_sentence = importance_table(
    rows,
    records,
    embed,
    params["similarity_threshold"],
    params["max_sentences"],
    params["extractor"],
)
per_sentence.insert(1, "kind", [conditions[c]["kind"] for c in per_sentence["condition"]])
write_tsv(snakemake.output.sentences, per_sentence)
by_kind = per_sentence.drop(columns="condition").rename(columns={"kind": "condition"})
table = importance_by_category(by_kind, "counterfactual_importance_kl")
write_tsv(snakemake.output.table, table)
write_text(snakemake.output.markdown, markdown_table(table))
figure, data = counterfactual_figure(table)
save_figure(figure, snakemake.output.png, snakemake.output.pdf)
write_csv(snakemake.output.data, data)
write_tsv(snakemake.output.controls, counterfactual_controls(per_sentence))
