"""Figures of the head-intervention experiments, each drawn from its tidy data frame."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from anchorflow.plots import figure_style


def interval_errorbar(
    axis: Axes, x: object, centre: pd.Series, low: pd.Series, high: pd.Series, **style: object
) -> None:
    """Points at ``centre`` with bars from ``low`` to ``high`` (no bar where a bound is NaN;
    rounding noise that puts a bound beyond the centre draws no bar)."""
    bars = [(centre - low).fillna(0).clip(lower=0), (high - centre).fillna(0).clip(lower=0)]
    axis.errorbar(x, centre, yerr=bars, capsize=3, **style)


def baseline_band(axis: Axes, accuracy: float, low: float, high: float) -> None:
    """The baseline as a grey band (its 95 % interval ``low``-``high``) and a line at its
    ``accuracy``."""
    axis.axhspan(low, high, color="0.85", label="baseline 95% CI")
    axis.axhline(accuracy, color="0.4", lw=1)


def finish_accuracy_axis(figure: Figure, axis: Axes, xlabel: str) -> None:
    axis.set_xlabel(xlabel)
    axis.set_ylabel("accuracy")
    axis.set_ylim(-0.02, 1.02)
    axis.legend(frameon=False, fontsize=8)
    figure.tight_layout()


def amplification_figure(table: pd.DataFrame) -> tuple[Figure, pd.DataFrame]:
    """Accuracy against scale, per receiver-head set size: receiver heads (95 % Wilson
    interval) and layer-matched random heads (mean, 2.5-97.5 % range over draws); the
    baseline is a horizontal band. ``table``: :func:`intervention_tables.receiver_vs_random`."""
    data = table.drop(columns=["heads"]).copy()
    with figure_style():
        figure, axis = plt.subplots(figsize=(6, 3.8))
        baseline = data[data["k"] == 0]
        if not baseline.empty:
            row = baseline.iloc[0]
            baseline_band(
                axis, row["receiver_accuracy"], row["receiver_ci_low"], row["receiver_ci_high"]
            )
        for k, group in data[data["k"] > 0].groupby("k"):
            group = group.sort_values("scale")
            positions = np.arange(len(group))
            interval_errorbar(
                axis,
                positions,
                group["receiver_accuracy"],
                group["receiver_ci_low"],
                group["receiver_ci_high"],
                marker="o",
                label=f"top-{k} receiver heads",
            )
            interval_errorbar(
                axis,
                positions + 0.08,
                group["random_mean"],
                group["random_q025"],
                group["random_q975"],
                marker="s",
                alpha=0.6,
                label=f"{k} random heads (matched layers)",
            )
            axis.set_xticks(positions, [f"{s:g}" for s in group["scale"]])
        finish_accuracy_axis(figure, axis, "scale of the heads' o_proj input")
    return figure, data


def ablation_figure(summary: pd.DataFrame) -> tuple[Figure, pd.DataFrame]:
    """Accuracy against the number of ablated heads: receiver heads (Wilson interval) vs
    layer-matched random heads (mean, 2.5-97.5 % range over draws)."""
    data = summary.drop(columns=["receiver_heads"])
    with figure_style():
        figure, axis = plt.subplots(figsize=(5, 3.8))
        interval_errorbar(
            axis,
            data["k"],
            data["receiver_accuracy"],
            data["receiver_ci_low"],
            data["receiver_ci_high"],
            marker="o",
            label="receiver heads",
        )
        interval_errorbar(
            axis,
            data["k"] + 0.05,
            data["random_mean"],
            data["random_q025"],
            data["random_q975"],
            marker="s",
            label="random heads (matched layers)",
        )
        axis.set_xticks(data["k"])
        finish_accuracy_axis(figure, axis, "number of ablated heads")
    return figure, data


def patching_figure(table: pd.DataFrame, draws: pd.DataFrame) -> tuple[Figure, pd.DataFrame]:
    """Accuracy of the baseline, the patched anchor sentence (95 % Wilson interval) and each
    patched control sentence (one point per draw, mean and 2.5-97.5 % range)."""
    data = pd.concat(
        [
            table[["condition", "accuracy", "ci_low", "ci_high"]].assign(kind="target"),
            draws[["condition", "accuracy"]].assign(kind="control draw"),
        ],
        ignore_index=True,
    )
    with figure_style():
        figure, axis = plt.subplots(figsize=(5, 3.8))
        named = table.set_index("condition")
        for position, name in enumerate(["baseline", "anchor"]):
            row = named.loc[name]
            interval_errorbar(
                axis,
                [position],
                pd.Series([row["accuracy"]]),
                pd.Series([row["ci_low"]]),
                pd.Series([row["ci_high"]]),
                marker="o",
                color="C0" if name == "anchor" else "0.4",
            )
        jitter = np.linspace(-0.15, 0.15, max(len(draws), 1))[: len(draws)]
        axis.scatter(2 + jitter, draws["accuracy"], color="C1", s=14, label="control draws")
        anchor = named.loc["anchor"]
        interval_errorbar(
            axis,
            [2.3],
            pd.Series([anchor["random_mean"]]),
            pd.Series([anchor["random_q025"]]),
            pd.Series([anchor["random_q975"]]),
            marker="s",
            color="C1",
            label="control mean, 2.5-97.5%",
        )
        axis.set_xticks([0, 1, 2], ["baseline", "anchor patched", "control patched"])
        finish_accuracy_axis(figure, axis, "")
    return figure, data


def counterfactual_figure(table: pd.DataFrame) -> tuple[Figure, pd.DataFrame]:
    """Mean counterfactual importance (± s.e.m.) per sentence category, bars per condition.
    ``table``: :func:`anchorflow.interventions.counterfactual.importance_by_category`."""
    data = table.copy()
    categories = sorted(data["category"].unique())
    conditions = list(dict.fromkeys(data["condition"]))
    width = 0.8 / max(len(conditions), 1)
    with figure_style():
        figure, axis = plt.subplots(figsize=(max(5.0, 1.2 * len(categories)), 3.8))
        for index, condition in enumerate(conditions):
            rows = data[data["condition"] == condition].set_index("category").reindex(categories)
            positions = np.arange(len(categories)) + (index - (len(conditions) - 1) / 2) * width
            axis.bar(
                positions,
                rows["mean"],
                width,
                yerr=rows["sem"].fillna(0),
                capsize=2,
                label=condition,
            )
        axis.set_xticks(
            np.arange(len(categories)), [c.replace("_", "\n") for c in categories], fontsize=8
        )
        axis.set_ylabel("counterfactual importance (KL, nats)")
        axis.legend(frameon=False, fontsize=8)
        figure.tight_layout()
    return figure, data


def counterfactual_boxplot(per_sentence: pd.DataFrame, metric: str) -> tuple[Figure, pd.DataFrame]:
    """Box plots of each sentence's ``metric`` per category, one box per condition kind
    (baseline, receivers, random draws pooled), the sentences as points. Returns the figure and
    its tidy data (``kind, trace, sentence, category, value``)."""
    import seaborn as sns

    data = per_sentence[["kind", "trace", "sentence", "category", metric]].rename(
        columns={metric: "value"}
    )
    categories = sorted(data["category"].unique())
    kinds = [k for k in ("baseline", "receivers", "random") if k in set(data["kind"])]
    with figure_style():
        figure, axis = plt.subplots(figsize=(max(6.0, 1.4 * len(categories)), 4.0))
        style = {"x": "category", "y": "value", "hue": "kind", "order": categories}
        sns.boxplot(data=data, hue_order=kinds, fliersize=0, ax=axis, **style)
        sns.stripplot(
            data=data,
            hue_order=kinds,
            dodge=True,
            jitter=False,  # seaborn's jitter is unseeded: the figure bytes would vary
            size=2,
            color="0.25",
            legend=False,
            ax=axis,
            **style,
        )
        axis.set_xticks(
            range(len(categories)), [c.replace("_", "\n") for c in categories], fontsize=8
        )
        axis.set_xlabel("")
        axis.set_ylabel("counterfactual importance (KL, nats)")
        axis.legend(frameon=False, fontsize=8, title=None)
        figure.tight_layout()
    return figure, data.reset_index(drop=True)
