"""Rule figure5: receiver-head scores + sentence labels -> Figure 5 and its paired t-tests."""

from pathlib import Path

from anchorflow.io import markdown_table, read_json, read_tsv, write_csv, write_text, write_tsv
from anchorflow.plots import save_figure
from anchorflow.plots.receivers import plot_figure5
from anchorflow.receivers.categories import (
    category_means,
    paired_ttests,
    with_categories,
)
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
categories = snakemake.params.categories
labels = {Path(path).stem: read_json(path)["chunks"] for path in snakemake.input.labels}
scored = with_categories(read_tsv(snakemake.input.scores), labels)
means, counts = category_means(
    scored, categories, snakemake.params.min_count, snakemake.params.min_count_of
)
log.info("category cells: %s", counts)
ttests = paired_ttests(means, categories)
write_csv(snakemake.output.data, means)
write_tsv(snakemake.output.ttests, ttests)
write_text(
    snakemake.output.markdown,
    f"# {snakemake.params.title}: paired t-tests\n\n{markdown_table(ttests, floatfmt='.4g')}\n"
    + "".join(f"- {name}: {value}\n" for name, value in counts.items()),
)
save_figure(
    plot_figure5(means, categories, snakemake.params.title),
    snakemake.output.png,
    snakemake.output.pdf,
)
