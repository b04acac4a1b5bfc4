"""Amplification sweep: accuracy table, Markdown table and figure."""

from anchorflow.io import read_json, read_tsv, write_csv, write_text, write_tsv
from anchorflow.plots import save_figure
from anchorflow.plots.interventions import amplification_figure
from anchorflow.scoring import amplification_table, markdown_table
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
conditions = read_json(snakemake.input.conditions)["conditions"]["amplification"]
table = amplification_table(read_tsv(snakemake.input.accuracy), conditions)
write_tsv(snakemake.output.table, table)
write_text(snakemake.output.markdown, markdown_table(table))
figure, data = amplification_figure(table)
save_figure(figure, snakemake.output.png, snakemake.output.pdf)
write_csv(snakemake.output.data, data)
