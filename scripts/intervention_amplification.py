"""Amplification sweep: receiver heads vs matched random heads per scale, tables and figure."""

import pandas as pd

from anchorflow.interventions.tables import receiver_vs_random
from anchorflow.io import markdown_table, read_json, read_jsonl, write_csv, write_text, write_tsv
from anchorflow.plots import save_figure
from anchorflow.plots.interventions import amplification_figure
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
conditions = read_json(snakemake.input.conditions)["conditions"]["amplification"]
table, draws = receiver_vs_random(pd.DataFrame(read_jsonl(snakemake.input.scored)), conditions)
write_tsv(snakemake.output.table, table)
write_tsv(snakemake.output.draws, draws)
write_text(snakemake.output.markdown, markdown_table(table))
figure, data = amplification_figure(table)
save_figure(figure, snakemake.output.png, snakemake.output.pdf)
write_csv(snakemake.output.data, data)
