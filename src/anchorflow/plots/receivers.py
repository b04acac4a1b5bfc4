"""Figures 4 and 5: receiver heads and receiver-head scores by category (method reference §11).

Each figure is drawn from one tidy data frame (the ``_data.csv`` written beside the figure), so
the plotted numbers and the published data are the same. The statistics themselves live in
:mod:`anchorflow.receivers`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from anchorflow.plots import figure_style

FIGURE4_COLUMNS = ["panel", "trace", "layer", "head", "rank", "x", "y", "value"]
CATEGORY_LABELS = {
    "plan_generation": "Plan\nGeneration",
    "fact_retrieval": "Fact\nRetrieval",
    "active_computation": "Active\nComputation",
    "uncertainty_management": "Uncertainty\nMgmt.",
    "result_consolidation": "Result\nConsolidation",
    "self_checking": "Self\nChecking",
    "problem_setup": "Problem\nSetup",
    "final_answer_emission": "Final Answer\nEmission",
}
CATEGORY_COLORS = {
    "plan_generation": "tab:red",
    "active_computation": "tab:green",
    "fact_retrieval": "tab:orange",
    "uncertainty_management": "tab:purple",
    "result_consolidation": "tab:blue",
    "self_checking": "tab:brown",
    "problem_setup": "tab:olive",
    "final_answer_emission": "tab:cyan",
}
WHITE_BLUES = LinearSegmentedColormap.from_list(
    "white_blues", ["white", *plt.get_cmap("Blues")(np.linspace(0.15, 1.0, 8))]
)


def _rows(panel: str, **columns: object) -> pd.DataFrame:
    frame = pd.DataFrame(columns)
    frame.insert(0, "panel", panel)
    return frame.reindex(columns=FIGURE4_COLUMNS)


def figure4_data(
    kurtosis: np.ndarray,
    split_halves: tuple[np.ndarray, np.ndarray],
    heads: np.ndarray,
    figure_trace: str,
    figure_vertical: np.ndarray,
    figure_matrix: np.ndarray | None,
    matrix_head: tuple[int, int],
    curve_heads: int = 5,
    histogram_bins: int = 80,
) -> pd.DataFrame:
    """Tidy data of every Figure 4 panel (columns :data:`FIGURE4_COLUMNS`).

    ``kurtosis`` is ``[traces, layers, heads]``, ``split_halves`` the two halves' mean kurtosis
    ``[layers, heads]`` each (:func:`anchorflow.receivers.reliability.split_half_means`),
    ``heads`` int ``[k, 2]``
    best first, ``figure_vertical`` the figure trace's ``[layers, heads, n]`` vertical scores and
    ``figure_matrix`` the ``[n, n]`` sentence attention of ``matrix_head`` on it (or ``None``).
    Panels (x, y, value):

    - ``kurtosis_by_layer``: layer, mean kurtosis over traces (layers >= 1);
    - ``kurtosis_histogram``: bin left edge, number of heads (``value`` = bin width);
    - ``split_half``: first-half mean kurtosis, second-half mean kurtosis (layers >= 1);
    - ``attention_matrix``: key sentence, query sentence, mean attention (lower triangle), or
      ``matrix_vertical_scores``: sentence, vertical score, when no matrix was saved;
    - ``vertical_scores``: sentence, vertical score of each of the top ``curve_heads`` heads.
    """
    n_traces, layers, n_heads = kurtosis.shape
    rank = np.full((layers, n_heads), np.nan)
    rank[heads[:, 0], heads[:, 1]] = np.arange(1, len(heads) + 1)
    layer, head = (grid[1:].ravel() for grid in np.indices((layers, n_heads)))
    mean = kurtosis.mean(axis=0)[1:].ravel()
    first, second = (half[1:].ravel() for half in split_halves)
    head_rank = rank[1:].ravel()
    frames = [
        _rows("kurtosis_by_layer", layer=layer, head=head, rank=head_rank, x=layer, y=mean),
        _rows("split_half", layer=layer, head=head, rank=head_rank, x=first, y=second),
    ]
    finite = mean[np.isfinite(mean)]
    if finite.size:
        low, high = min(0.0, np.floor(finite.min())), max(1.0, np.ceil(finite.max()))
        counts, edges = np.histogram(finite, bins=histogram_bins, range=(low, high))
        frames.append(_rows("kurtosis_histogram", x=edges[:-1], y=counts, value=np.diff(edges)))
    matrix_layer, matrix_head_index = matrix_head
    common = {"trace": figure_trace, "layer": matrix_layer, "head": matrix_head_index}
    common["rank"] = rank[matrix_layer, matrix_head_index]
    if figure_matrix is not None:
        query, key = np.tril_indices(figure_matrix.shape[0])
        frames.append(
            _rows("attention_matrix", x=key, y=query, value=figure_matrix[query, key], **common)
        )
    else:
        scores = figure_vertical[matrix_layer, matrix_head_index]
        frames.append(_rows("matrix_vertical_scores", x=np.arange(scores.size), y=scores, **common))
    for position, (curve_layer, curve_head) in enumerate(heads[:curve_heads], start=1):
        scores = figure_vertical[curve_layer, curve_head]
        frames.append(
            _rows(
                "vertical_scores",
                trace=figure_trace,
                layer=curve_layer,
                head=curve_head,
                rank=position,
                x=np.arange(scores.size),
                y=scores,
            )
        )
    data = pd.concat([frame for frame in frames if len(frame)], ignore_index=True)
    return data.astype({"layer": "Int64", "head": "Int64", "rank": "Int64"})


def _panel(data: pd.DataFrame, name: str) -> pd.DataFrame:
    return data[data["panel"] == name]


def _kurtosis_by_layer(ax: plt.Axes, data: pd.DataFrame) -> None:
    points = _panel(data, "kurtosis_by_layer")
    ax.scatter(points["x"], points["y"], color="dodgerblue", alpha=0.25, s=20, linewidths=0)
    top = points[points["rank"].notna()]
    ax.scatter(
        top["x"],
        top["y"],
        facecolors="none",
        edgecolors="navy",
        s=30,
        linewidths=0.8,
        label=f"top {len(top)} receiver heads",
    )
    ax.set_xlim(0, max(points["x"].max(), 1) + 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Layer")
    ax.set_ylabel("Kurtosis")
    ax.set_title("Kurtosis of each attention head's\nvertical score")
    ax.legend(frameon=False, fontsize=8, loc="upper left")


def _kurtosis_histogram(ax: plt.Axes, data: pd.DataFrame) -> None:
    bins = _panel(data, "kurtosis_histogram")
    ax.bar(
        bins["x"],
        bins["y"],
        width=bins["value"],
        align="edge",
        color="dodgerblue",
        edgecolor="none",
    )
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Kurtosis")
    ax.set_ylabel("Number of heads")
    ax.set_title("Histogram of attention head\nvertical score kurtoses")


def _split_half(ax: plt.Axes, data: pd.DataFrame, r: float) -> None:
    points = _panel(data, "split_half").dropna(subset=["x", "y"])
    x, y = points["x"].to_numpy(float), points["y"].to_numpy(float)
    ax.scatter(x, y, color="dodgerblue", alpha=0.25, s=20, linewidths=0)
    low = min(-1.0, float(np.min(x, initial=0)), float(np.min(y, initial=0)))
    high = max(float(np.max(x, initial=1)), float(np.max(y, initial=1))) * 1.05
    if x.size >= 2 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        ax.plot([low, high], [slope * low + intercept, slope * high + intercept], "k--", lw=1)
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal", adjustable="box")
    ax.text(0.6, 0.1, f"r = {r:.2f}", transform=ax.transAxes)
    ax.set_xlabel("First half kurtosis")
    ax.set_ylabel("Second half kurtosis")
    ax.set_title("Split-half reliability assessment")


def _attention_matrix(ax: plt.Axes, data: pd.DataFrame) -> None:
    cells = _panel(data, "attention_matrix")
    if len(cells):
        n = int(cells["y"].max()) + 1
        matrix = np.full((n, n), np.nan)
        matrix[cells["y"].to_numpy(int), cells["x"].to_numpy(int)] = cells["value"]
        vmax = float(np.nanquantile(matrix, 0.99)) or None
        image = ax.imshow(
            np.nan_to_num(matrix), cmap=WHITE_BLUES, vmin=0, vmax=vmax, interpolation="nearest"
        )
        plt.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="Mean attention")
        ax.set_xlabel("Sentence position (key)")
        ax.set_ylabel("Sentence position (query)")
        first = cells.iloc[0]
        title = f"L{first['layer']}H{first['head']}, {first['trace']}"
    else:
        scores = _panel(data, "matrix_vertical_scores")
        ax.bar(scores["x"], scores["y"].fillna(0), color="tab:blue", width=1.0)
        ax.set_xlabel("Sentence position")
        ax.set_ylabel("Vertical score")
        first = scores.iloc[0]
        title = (
            f"L{first['layer']}H{first['head']}, {first['trace']}\n"
            "(matrix not saved: vertical scores only)"
        )
    ax.set_title(title)


def _vertical_curves(ax: plt.Axes, data: pd.DataFrame) -> None:
    curves = _panel(data, "vertical_scores")
    palette = plt.get_cmap("tab10")
    for index, ((rank, layer, head), curve) in enumerate(
        curves.groupby(["rank", "layer", "head"], sort=True)
    ):
        ax.plot(
            curve["x"],
            curve["y"],
            lw=2.0 if rank == 1 else 1.0,
            color="navy" if rank == 1 else palette((index - 1) % 10),
            alpha=1.0 if rank == 1 else 0.7,
            label=f"#{rank} L{layer}H{head}",
        )
    ax.set_xlabel("Sentence position")
    ax.set_ylabel("Vertical attention score")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, -3), useMathText=True)
    ax.set_title(f"Vertical scores of the top receiver heads, {curves['trace'].iloc[0]}")
    ax.legend(frameon=False, fontsize=8, ncol=2)


def plot_figure4(data: pd.DataFrame, r: float) -> Figure:
    """Figure 4 from :func:`figure4_data`'s frame; ``r`` is the split-half Pearson r."""
    with figure_style():
        figure = plt.figure(figsize=(15, 8.5), layout="constrained")
        grid = figure.add_gridspec(2, 3, height_ratios=[1, 1.1])
        _kurtosis_by_layer(figure.add_subplot(grid[0, 0]), data)
        _kurtosis_histogram(figure.add_subplot(grid[0, 1]), data)
        _split_half(figure.add_subplot(grid[0, 2]), data, r)
        _attention_matrix(figure.add_subplot(grid[1, 0]), data)
        _vertical_curves(figure.add_subplot(grid[1, 1:]), data)
    return figure


def plot_figure5(means: pd.DataFrame, categories: list[str], title: str) -> Figure:
    """Box plot of per-trace mean receiver-head scores by category (method reference §11.2).

    ``means`` has columns ``trace, category, mean_receiver_score`` (from
    :func:`anchorflow.receivers.categories.category_means`); every category in ``categories``
    gets a slot.
    """
    colors = {category: CATEGORY_COLORS.get(category, "tab:gray") for category in categories}
    with figure_style():
        figure, ax = plt.subplots(figsize=(7, 2.5), layout="constrained")
        if len(means):
            layout = {
                "data": means,
                "x": "category",
                "y": "mean_receiver_score",
                "order": categories,
                "ax": ax,
            }
            sns.boxplot(
                **layout,
                hue="category",
                hue_order=categories,
                palette=colors,
                width=0.6,
                legend=False,
                fliersize=0,
            )
            sns.stripplot(**layout, color="black", size=3, jitter=False)
        else:
            ax.text(
                0.5,
                0.5,
                "no category cell has enough sentences",
                ha="center",
                transform=ax.transAxes,
            )
        ax.set_xticks(range(len(categories)))
        ax.set_xticklabels([CATEGORY_LABELS.get(c, c) for c in categories], fontsize=9)
        for label, category in zip(ax.get_xticklabels(), categories, strict=True):
            label.set_color(colors[category])
        ax.set_xlim(-0.5, len(categories) - 0.5)
        ax.set_xlabel("")
        ax.set_ylabel("Mean receiver-head score")
        ax.set_ylim(bottom=0)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, -3), useMathText=True)
        ax.set_title(title, pad=16)
    return figure
