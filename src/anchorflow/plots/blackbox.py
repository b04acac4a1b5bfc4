"""The white-box ↔ black-box figure: receiver score against a black-box importance, sentence by
sentence, and the per-trace rho of every metric."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from anchorflow.plots import figure_style


def blackbox_figure(
    sentences: pd.DataFrame, per_trace: pd.DataFrame, score: str, metric: str
) -> tuple[Figure, pd.DataFrame]:
    """Left: ``score`` against ``metric`` per sentence (ranks within each trace, coloured by
    category). Right: the per-trace rho of ``score`` with every metric (one point a trace, a box
    per metric). Returns the figure and its tidy data (the per-trace rows of ``score``)."""
    usable = sentences[np.isfinite(sentences[score]) & np.isfinite(sentences[metric])].copy()
    grouped = usable.groupby("trace")
    usable["score_rank"] = grouped[score].rank(pct=True)
    usable["metric_rank"] = grouped[metric].rank(pct=True)
    data = per_trace[per_trace["score"] == score].reset_index(drop=True)
    with figure_style():
        figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8), width_ratios=(1, 1.4))
        sns.scatterplot(
            data=usable,
            x="score_rank",
            y="metric_rank",
            hue="category",
            s=14,
            linewidth=0,
            alpha=0.7,
            ax=left,
        )
        left.set_xlabel(f"{score} (rank within trace)")
        left.set_ylabel(f"{metric} (rank within trace)")
        left.legend(
            fontsize=6,
            frameon=False,
            markerscale=0.8,
            ncol=3,
            loc="lower left",
            bbox_to_anchor=(0, 1),
        )
        order = sorted(data["metric"].unique())
        sns.boxplot(data=data, x="rho", y="metric", order=order, color="0.9", fliersize=0, ax=right)
        sns.stripplot(
            data=data, x="rho", y="metric", order=order, size=3, color="C0", jitter=False, ax=right
        )
        right.axvline(0, color="0.5", lw=0.8)
        right.set_xlabel(f"Spearman rho of {score} within a trace")
        right.set_ylabel("")
        figure.tight_layout()
    return figure, data
