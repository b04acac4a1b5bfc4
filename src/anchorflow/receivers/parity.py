"""The measured effect of each parity switch on a run's receiver-head results (docs/PARITY.md).

Two runs of one model on the same traces, differing only in ``sentences.token_rule`` (offsets,
anchorflow's default, and prefix, the reference's), hold everything needed: their attention files
(vertical scores ``[layers, heads, n]``), sentences files and label files. Each switch is then
applied alone to anchorflow's defaults, and all of them together, and the receiver-head
statistics are compared with the defaults':

    python -m anchorflow.receivers.parity results/real-sample results/real-sample-parity \\
        --model smollm2 --rollouts deepseek-r1-distill-qwen-14b
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from anchorflow.io import read_json, read_npz
from anchorflow.receivers.analysis import analyse_receivers, receiver_score_table
from anchorflow.receivers.categories import category_means, paired_ttests, with_categories

FIGURE5_CATEGORIES = [
    "plan_generation",
    "fact_retrieval",
    "active_computation",
    "uncertainty_management",
    "result_consolidation",
    "self_checking",
]


@dataclass(frozen=True)
class Switches:
    """One combination of the parity switches (anchorflow's defaults: offsets, True, scored)."""

    token_rule: str = "offsets"
    exclude_layer0: bool = True
    min_count_of: str = "scored"


@dataclass(frozen=True)
class RunInputs:
    """Per trace: vertical scores ``[layers, heads, n]``, ``chunk_idx`` and label chunks."""

    vertical: dict[str, np.ndarray]
    chunk_indices: dict[str, list[int]]
    labels: dict[str, list[dict]]


def read_run(results: Path, model: str, rollouts: str) -> RunInputs:
    """A run's attention, sentences and label files for ``model``."""
    vertical, chunk_indices, labels = {}, {}, {}
    for attention in sorted((results / "attention" / model).glob("*.npz")):
        trace = attention.stem
        arrays, _ = read_npz(attention)
        vertical[trace] = arrays["vertical_scores"]
        sentences = read_json(results / "sentences" / rollouts / f"{trace}.json")
        chunk_indices[trace] = sentences["chunk_idx"]
        labels[trace] = read_json(results / "labels" / rollouts / f"{trace}.json")["chunks"]
    if not vertical:
        raise FileNotFoundError(f"no attention files under {results / 'attention' / model}")
    return RunInputs(vertical, chunk_indices, labels)


def receiver_results(
    inputs: RunInputs, switches: Switches, top_k: int = 20, min_count: int = 2
) -> dict:
    """Mean kurtosis ``[layers, heads]``, top-k heads, split-half r and Figure 5 t-tests."""
    analysis = analyse_receivers(
        inputs.vertical, top_k, switches.exclude_layer0, n_bootstrap=1, seed=0
    )
    scores = receiver_score_table(analysis, inputs.vertical, inputs.chunk_indices)
    scored = with_categories(scores, inputs.labels)
    means, _ = category_means(scored, FIGURE5_CATEGORIES, min_count, switches.min_count_of)
    return {
        "mean_kurtosis": analysis.mean_kurtosis,
        "heads": {tuple(row) for row in analysis.heads.tolist()},
        "r": float(analysis.reliability["r"]),
        "ttests": paired_ttests(means, FIGURE5_CATEGORIES),
        "n_cells": len(means),
    }


def compare(default: dict, switched: dict) -> dict[str, float | int | str]:
    """How far ``switched`` results lie from ``default`` ones."""
    kurtosis_change = np.abs(switched["mean_kurtosis"] - default["mean_kurtosis"])
    before, after = default["ttests"], switched["ttests"]
    merged = before.merge(after, on=["category_a", "category_b"], suffixes=("", "_switched"))
    significant = (merged["p"] < 0.05) != (merged["p_switched"] < 0.05)
    return {
        "top_overlap": f"{len(default['heads'] & switched['heads'])} of {len(default['heads'])}",
        "max_abs_kurtosis_change": float(np.nanmax(kurtosis_change)),
        "split_half_r": f"{default['r']:.3f} -> {switched['r']:.3f}",
        "figure5_cells": f"{default['n_cells']} -> {switched['n_cells']}",
        "tests_with_other_n": int((merged["n"] != merged["n_switched"]).sum()),
        "max_abs_t_change": float(np.nanmax(np.abs(merged["t"] - merged["t_switched"]))),
        "tests_changing_p_lt_0.05": int(significant.sum()),
        "n_tests": len(merged),
    }


def parity_effects(offsets_run: RunInputs, prefix_run: RunInputs) -> pd.DataFrame:
    """One row per switch alone and for all switches together, against the defaults."""
    default = receiver_results(offsets_run, Switches())
    variants = {
        "sentences.token_rule: prefix": (prefix_run, Switches(token_rule="prefix")),
        "receivers.exclude_layer0: false": (offsets_run, Switches(exclude_layer0=False)),
        "receivers.min_count_of: all": (offsets_run, Switches(min_count_of="all")),
        "all switches (config/paper-parity.yaml)": (
            prefix_run,
            Switches("prefix", exclude_layer0=False, min_count_of="all"),
        ),
    }
    rows = [
        {"switch": name, **compare(default, receiver_results(inputs, switches))}
        for name, (inputs, switches) in variants.items()
    ]
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("offsets_results", type=Path, help="results/{run} with token_rule offsets")
    parser.add_argument("prefix_results", type=Path, help="results/{run} with token_rule prefix")
    parser.add_argument("--model", required=True)
    parser.add_argument("--rollouts", required=True)
    arguments = parser.parse_args()
    table = parity_effects(
        read_run(arguments.offsets_results, arguments.model, arguments.rollouts),
        read_run(arguments.prefix_results, arguments.model, arguments.rollouts),
    )
    print(table.to_markdown(index=False, floatfmt=".3g"))


if __name__ == "__main__":
    main()
