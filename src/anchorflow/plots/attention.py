"""The figure of an attention experiment, drawn from its table."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from anchorflow.plots import figure_style
from anchorflow.plots.interventions import baseline_band, finish_accuracy_axis, interval_errorbar

CONTROL_COLOURS = {"random heads": "C1", "control sentences": "C2"}


def attention_figure(table: pd.DataFrame, title: str) -> tuple[Figure, pd.DataFrame]:
    """Accuracy of each receiver-head condition (95 % Wilson interval) beside its controls
    (mean, 2.5-97.5 % range over draws), the baseline as a band. ``table``:
    :func:`anchorflow.interventions.attention_tables.attention_table`."""
    data = table.drop(columns=["heads"], errors="ignore").copy()
    baseline = data.iloc[0]
    targets = data.iloc[1:]
    names = list(dict.fromkeys(targets["condition"]))
    with figure_style():
        figure, axis = plt.subplots(figsize=(max(4.5, 1.1 * len(names) + 2), 3.8))
        baseline_band(axis, baseline["accuracy"], baseline["ci_low"], baseline["ci_high"])
        first = targets.drop_duplicates("condition")
        positions = np.arange(len(names))
        interval_errorbar(
            axis,
            positions,
            first["accuracy"],
            first["ci_low"],
            first["ci_high"],
            marker="o",
            linestyle="none",
            color="C0",
            label="receiver heads",
        )
        for offset, (label, group) in enumerate(targets.groupby("control", sort=False), start=1):
            x = [names.index(name) + 0.12 * offset for name in group["condition"]]
            interval_errorbar(
                axis,
                x,
                group["control_mean"],
                group["control_q025"],
                group["control_q975"],
                marker="s",
                linestyle="none",
                alpha=0.7,
                color=CONTROL_COLOURS.get(label, "C3"),
                label=f"{label} (mean, 2.5-97.5%)",
            )
        axis.set_xticks(positions, names, rotation=30, ha="right", fontsize=8)
        axis.set_title(title, fontsize=9)
        finish_accuracy_axis(figure, axis, "")
    return figure, data
