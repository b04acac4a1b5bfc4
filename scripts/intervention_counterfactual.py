"""Counterfactual importance per sentence under each condition (with one or both
similarities), by category, against the random draws, the changes against no ablation, the
dropdown runs and box plots."""

from anchorflow.data.rollouts import read_records
from anchorflow.interventions.counterfactual import (
    importance_by_category,
    importance_table,
    load_embedder,
    model_embedder,
    similarity_suffixes,
)
from anchorflow.interventions.counterfactual_tables import (
    change_by_category,
    dropdown_growth,
    dropdown_table,
    importance_changes,
    similarity_by_category,
    top_changes,
)
from anchorflow.interventions.tables import counterfactual_controls
from anchorflow.io import markdown_table, read_json, write_csv, write_text, write_tsv
from anchorflow.models.loading import load_model, pick_device
from anchorflow.plots import save_figure
from anchorflow.plots.interventions import counterfactual_boxplot, counterfactual_figure
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
params = snakemake.params.counterfactual
output = snakemake.output
conditions = read_json(snakemake.input.conditions)["conditions"]["counterfactual"]
records = {
    r["trace"]: r
    for r in read_records(snakemake.input.records)
    if r["rollouts"] == params["rollouts"]
}
rows = []
for path in snakemake.input.shards:
    rows += read_json(path)["rows"]
device = str(pick_device())
similarities = {}  # name -> (embedder, threshold); the first is the primary similarity
if params["similarity"] in ("sentence_model", "both"):
    similarities["sentence_model"] = (
        load_embedder(params["embedding_model"], device),
        params["similarity_threshold"],
    )
if params["similarity"] in ("model_embeddings", "both"):
    model, tokenizer = load_model(snakemake.params.model, device=device)
    similarities["model_embeddings"] = (
        model_embedder(model, tokenizer),
        params["model_similarity_threshold"],
    )
per_sentence = importance_table(
    rows, records, similarities, params["max_sentences"], params["extractor"]
)
per_sentence.insert(1, "kind", [conditions[c]["kind"] for c in per_sentence["condition"]])
metric = "counterfactual_importance_kl"
log.info("%d sentence rows, similarities: %s", len(per_sentence), params["similarity"])
write_tsv(output.sentences, per_sentence)
by_kind = per_sentence.drop(columns="condition").rename(columns={"kind": "condition"})
table = importance_by_category(by_kind, metric)
write_tsv(output.table, table)
write_text(output.markdown, markdown_table(table))
figure, data = counterfactual_figure(table)
save_figure(figure, output.png, output.pdf)
write_csv(output.data, data)
figure, data = counterfactual_boxplot(per_sentence, metric)
save_figure(figure, output.box_png, output.box_pdf)
write_csv(output.box_data, data)
write_tsv(output.controls, counterfactual_controls(per_sentence))
suffixes = similarity_suffixes(list(similarities))
write_tsv(output.similarity, similarity_by_category(per_sentence, suffixes))
changes = importance_changes(per_sentence, metric)
write_tsv(output.changes, changes)
write_tsv(output.change_by_category, change_by_category(changes))
write_tsv(output.top_changes, top_changes(changes, params["top_k_changes"]))
dropdowns = dropdown_table(
    per_sentence, metric, params["dropdown"]["min_length"], params["dropdown"]["epsilon"]
)
write_tsv(output.dropdown, dropdowns)
write_tsv(output.dropdown_growth, dropdown_growth(dropdowns))
