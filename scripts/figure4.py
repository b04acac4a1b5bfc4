"""Rule figure4: kurtosis, reliability and the Figure 4 trace's attention -> Figure 4."""

from anchorflow.io import read_npz, read_tsv, write_csv
from anchorflow.plots import save_figure
from anchorflow.plots.receivers import figure4_data, plot_figure4
from anchorflow.receivers.analysis import kurtosis_array
from anchorflow.receivers.reliability import split_half_means
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
reliability = read_tsv(snakemake.input.reliability).iloc[0]
traces = reliability["trace_order"].split(",")
kurtosis = kurtosis_array(read_tsv(snakemake.input.kurtosis), traces)
heads = read_tsv(snakemake.input.heads)[["layer", "head"]].to_numpy()
arrays, _ = read_npz(snakemake.input.attention)
vertical = arrays["vertical_scores"]
layer, head = snakemake.params.head or heads[0]
if not (0 <= layer < vertical.shape[0] and 0 <= head < vertical.shape[1]):
    raise ValueError(f"receivers.figure_head ({layer}, {head}) is outside {vertical.shape[:2]}")
matrices = arrays.get("sentence_attention")
matrix = None if matrices is None else matrices[layer, head].astype("float64")
log.info(
    "trace %s, head L%dH%d, sentence attention %s",
    snakemake.params.trace,
    layer,
    head,
    "saved" if matrix is not None else "not saved: drawing vertical scores only",
)
data = figure4_data(
    kurtosis,
    split_half_means(kurtosis),
    heads,
    snakemake.params.trace,
    vertical,
    matrix,
    (int(layer), int(head)),
    snakemake.params.curve_heads,
)
write_csv(snakemake.output.data, data)
save_figure(plot_figure4(data, float(reliability["r"])), snakemake.output.png, snakemake.output.pdf)
