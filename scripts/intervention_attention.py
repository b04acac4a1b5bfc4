"""An attention experiment: receiver heads against matched random heads and control sentences."""

import pandas as pd

from anchorflow.interventions.attention_tables import attention_details, attention_table
from anchorflow.io import markdown_table, read_json, read_jsonl, write_csv, write_text, write_tsv
from anchorflow.plots import save_figure
from anchorflow.plots.attention import attention_figure
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
experiment = snakemake.wildcards.experiment
resolved = read_json(snakemake.input.conditions)
table, draws = attention_table(
    pd.DataFrame(read_jsonl(snakemake.input.scored)), resolved["conditions"][experiment]
)
write_tsv(snakemake.output.table, table)
write_tsv(snakemake.output.draws, draws)
write_tsv(snakemake.output.details, attention_details(resolved, experiment))
write_text(snakemake.output.markdown, markdown_table(table))
figure, data = attention_figure(table, experiment.replace("_", " "))
save_figure(figure, snakemake.output.png, snakemake.output.pdf)
write_csv(snakemake.output.data, data)
