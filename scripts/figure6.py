"""Rule figure6: one trace's suppression matrix -> Figure 6 (PNG, PDF, tidy data)."""

from anchorflow.io import read_npz, write_csv
from anchorflow.plots import save_figure
from anchorflow.plots.suppression import figure6_data, figure6_matrix, plot_figure6
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
trace = snakemake.params.trace
arrays, _ = read_npz(snakemake.input.matrix)
drawn = figure6_matrix(arrays["log_kl"], snakemake.params.min_distance)
log.info("%s: colour limits %.3f..%.3f", trace, drawn.vmin, drawn.vmax)
problem, correctness = trace.split("_")
write_csv(snakemake.output.data, figure6_data(trace, arrays["log_kl"], drawn))
figure = plot_figure6(drawn, f"Problem: {problem} ({correctness})")
save_figure(figure, snakemake.output.png, snakemake.output.pdf)
