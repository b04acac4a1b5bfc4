"""``python -m anchorflow.explorer``: write the trace explorer of a run."""

from __future__ import annotations

from pathlib import Path

from anchorflow.explorer.pages import explorer_pages
from anchorflow.explorer.render import write_explorer


def main() -> None:
    """``python -m anchorflow.explorer results/RUN --model NAME=ROLLOUTS ...``: the explorer of
    a run from whatever stages it has (the ``explorer`` rule does the same once all have run)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m anchorflow.explorer", description=main.__doc__.split(":")[0]
    )
    parser.add_argument("results", type=Path, help="results/{run}")
    parser.add_argument("--model", action="append", required=True, help="NAME=ROLLOUTS")
    parser.add_argument("--interventions-model", default=None)
    parser.add_argument("--output", type=Path, default=None, help="default: RESULTS/explorer")
    arguments = parser.parse_args()
    models = dict(item.split("=", 1) for item in arguments.model)
    pages, heads, links = explorer_pages(arguments.results, models, arguments.interventions_model)
    output = arguments.output or arguments.results / "explorer"
    written = write_explorer(output, arguments.results.name, pages, heads, links)
    print(f"{len(written)} pages under {output}")


if __name__ == "__main__":
    main()
