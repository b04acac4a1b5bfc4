"""Incremental ablation: receiver heads vs matched random heads, tables and figure."""

import pandas as pd

from anchorflow.interventions.tables import receiver_vs_random
from anchorflow.io import markdown_table, read_json, read_jsonl, write_csv, write_text, write_tsv
from anchorflow.plots import save_figure
from anchorflow.plots.interventions import ablation_figure
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
conditions = read_json(snakemake.input.conditions)["conditions"]["ablation"]
summary, draws = receiver_vs_random(
    pd.DataFrame(read_jsonl(snakemake.input.scored)), conditions, match_on=["k"]
)
summary = summary.rename(columns={"heads": "receiver_heads"})
write_tsv(snakemake.output.table, summary)
write_tsv(snakemake.output.draws, draws)
write_text(snakemake.output.markdown, markdown_table(summary))
figure, data = ablation_figure(summary)
save_figure(figure, snakemake.output.png, snakemake.output.pdf)
write_csv(snakemake.output.data, data)
