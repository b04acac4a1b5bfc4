"""Sentence-position patching: the anchor sentence vs matched control sentences."""

import pandas as pd

from anchorflow.interventions.tables import answer_change_rate, receiver_vs_random
from anchorflow.io import markdown_table, read_json, read_jsonl, write_csv, write_text, write_tsv
from anchorflow.plots import save_figure
from anchorflow.plots.interventions import patching_figure
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
resolved = read_json(snakemake.input.conditions)
conditions = resolved["conditions"]["patching"]
scored = pd.DataFrame(read_jsonl(snakemake.input.scored))
table, draws = receiver_vs_random(scored, conditions, target_kind="anchor", match_on=["k"])
table = table.drop(columns=["k", "heads"]).rename(
    columns={
        "receiver_accuracy": "accuracy",
        "receiver_ci_low": "ci_low",
        "receiver_ci_high": "ci_high",
    }
)
table.insert(1, "patch_layer", resolved["params"]["patch_layer"])
table["answer_change_rate"] = [answer_change_rate(scored, name) for name in table["condition"]]
draws["answer_change_rate"] = [answer_change_rate(scored, name) for name in draws["condition"]]
write_tsv(snakemake.output.table, table)
write_tsv(snakemake.output.draws, draws.drop(columns=["k", "scale", "heads", "draw_seed"]))
write_tsv(snakemake.output.sentences, pd.DataFrame(resolved["patching_sentences"]))
write_text(snakemake.output.markdown, markdown_table(table))
figure, data = patching_figure(table, draws)
save_figure(figure, snakemake.output.png, snakemake.output.pdf)
write_csv(snakemake.output.data, data)
