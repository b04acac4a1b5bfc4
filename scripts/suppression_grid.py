"""Rule suppression_grid: every trace's suppression matrix -> a small-multiples Figure 6."""

from pathlib import Path

import pandas as pd

from anchorflow.io import read_npz, write_csv
from anchorflow.plots import save_figure
from anchorflow.plots.suppression import figure6_data, figure6_matrix, plot_grid
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
matrices, frames = {}, []
for path in snakemake.input.matrices:
    trace = Path(path).stem
    log_kl = read_npz(path)[0]["log_kl"]
    matrices[trace] = figure6_matrix(log_kl, snakemake.params.min_distance)
    frames.append(figure6_data(trace, log_kl, matrices[trace]))
write_csv(snakemake.output.data, pd.concat(frames, ignore_index=True))
save_figure(plot_grid(matrices), snakemake.output.png, snakemake.output.pdf)
log.info("%d traces", len(matrices))
