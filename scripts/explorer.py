"""Rule explorer: a run's result files -> results/{run}/explorer/ (index.html and one page per
model and trace), static and self-contained."""

from pathlib import Path

from anchorflow.explorer.pages import explorer_pages
from anchorflow.explorer.render import PAGES_FOLDER, write_explorer
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
results = Path(snakemake.input.records).parents[1]  # results/{run}/rollouts/records.jsonl
pages, heads, links = explorer_pages(
    results,
    snakemake.params.models,
    snakemake.params.interventions_model,
    snakemake.params.curve_heads,
)
folder = Path(snakemake.output.index).parent
if Path(snakemake.output.pages) != folder / PAGES_FOLDER:
    raise ValueError(f"the pages must go to {folder / PAGES_FOLDER}, not {snakemake.output.pages}")
written = write_explorer(folder, snakemake.params.run, pages, heads, links)
size = sum(path.stat().st_size for path in written)
log.info("%d pages, %.1f kB in all, largest %.1f kB", len(written), size / 1e3,
         max(path.stat().st_size for path in written) / 1e3)  # fmt: skip
