"""Figure 6 (the suppression matrix), its small-multiples grid, and the white-box/black-box link.

Numpy/pandas only (no torch), so the figure rules run in the analysis environment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from anchorflow.plots import figure_style

IMPORTANCE_METRICS = (
    "receiver_score",
    "counterfactual_importance_kl",
    "resampling_importance_accuracy",
)


@dataclass
class Figure6Matrix:
    """Figure 6 as drawn (§11.3): ``matrix`` float64 ``[n, n]`` with the upper triangle and the
    diagonal blanked, rows centred, the diagonal painted; colour limits; whether the limits came
    from the entries at least ``min_distance`` apart or (too few sentences) from all of them."""

    matrix: np.ndarray
    vmin: float
    vmax: float
    limits_from_distant: bool


def row_centred(log_kl: np.ndarray) -> np.ndarray:
    """``log_kl [n, n]`` with ``j >= i`` blanked and each row minus its mean over ``j < i``."""
    matrix = np.array(log_kl, dtype=np.float64)
    matrix[np.triu_indices(len(matrix))] = np.nan
    counts = np.isfinite(matrix).sum(axis=1, keepdims=True)
    sums = np.nansum(matrix, axis=1, keepdims=True)
    means = np.divide(sums, counts, out=np.full_like(sums, np.nan), where=counts > 0)
    return matrix - means


def figure6_matrix(
    log_kl: np.ndarray,
    min_distance: int = 11,
    quantiles: tuple[float, float] = (0.5, 0.998),
    diagonal_quantile: float = 0.99,
) -> Figure6Matrix:
    """The plotted suppression matrix of §11.3 from ``log_kl [n, n]``; the diagonal is painted
    where the sentence was computed (not beyond a token cut)."""
    matrix = row_centred(log_kl)
    finite = matrix[np.isfinite(matrix)]
    if finite.size == 0:
        raise ValueError("the suppression matrix has no finite entry below the diagonal")
    computed = np.flatnonzero(np.isfinite(np.diag(np.asarray(log_kl, dtype=np.float64))))
    matrix[computed, computed] = np.quantile(finite, diagonal_quantile)
    distant = matrix[np.tril_indices(len(matrix), k=-min_distance)]
    distant = distant[np.isfinite(distant)]
    values = distant if distant.size else finite
    vmin, vmax = (float(np.quantile(values, q)) for q in quantiles)
    return Figure6Matrix(matrix, vmin, vmax, bool(distant.size))


def suppression_importance(log_kl: np.ndarray, min_distance: int = 1) -> np.ndarray:
    """Per-sentence suppression importance ``[n]``: the mean, over the affected sentences
    ``i >= s + min_distance``, of the row-centred log-KL ``C[i, s]`` (``C`` as in Figure 6:
    ``log_kl[i, s]`` minus the mean of row ``i`` over ``j < i``). NaN when no such row exists."""
    centred = row_centred(log_kl)
    below = np.tril(np.ones(centred.shape, dtype=bool), k=-min_distance)
    kept = np.where(below & np.isfinite(centred), centred, 0.0)
    counts = (below & np.isfinite(centred)).sum(axis=0)
    return np.divide(kept.sum(axis=0), counts, out=np.full(len(centred), np.nan), where=counts > 0)


def spearman_rows(
    frame: pd.DataFrame, value: str, metrics: Sequence[str], scope: str, group: str
) -> list[dict]:
    """Spearman correlations of column ``value`` with each metric column over the rows of
    ``frame`` where both are finite: ``scope, group, metric, n, rho, p_value`` per metric."""
    rows = []
    for metric in metrics:
        pair = frame[[value, metric]].astype(float)
        pair = pair[np.isfinite(pair).all(axis=1)]
        varies = len(pair) >= 3 and pair[value].nunique() > 1 and pair[metric].nunique() > 1
        rho, p_value = spearmanr(pair[value], pair[metric]) if varies else (np.nan, np.nan)
        rows.append(
            {
                "scope": scope,
                "group": group,
                "metric": metric,
                "n": len(pair),
                "rho": float(rho),
                "p_value": float(p_value),
            }
        )
    return rows


def correlation_table(
    linked: pd.DataFrame, metrics: Sequence[str] = IMPORTANCE_METRICS
) -> pd.DataFrame:
    """Spearman of ``suppression_importance`` with each metric, over all sentences, per trace
    and per category: columns ``scope, group, metric, n, rho, p_value``."""
    rows = spearman_rows(linked, "suppression_importance", metrics, "all", "all")
    for scope in ("trace", "category"):
        for group, part in linked.groupby(scope, sort=True):
            rows += spearman_rows(part, "suppression_importance", metrics, scope, str(group))
    return pd.DataFrame(rows)


def link_table(
    trace: str,
    log_kl: np.ndarray,
    chunk_idx: Sequence[int],
    categories: Sequence[str],
    receiver_score: Sequence[float],
    record_labels: Sequence[dict[str, Any]],
    min_distance: int = 1,
) -> pd.DataFrame:
    """One row per sentence: ``trace, sentence, chunk_idx, category, suppression_importance``
    and the metrics of :data:`IMPORTANCE_METRICS` (black-box ones from the record's ``labels``,
    matched by ``chunk_idx``; NaN where the dataset has none)."""
    n_sentences = len(log_kl)
    if not len(chunk_idx) == len(categories) == len(receiver_score) == n_sentences:
        raise ValueError(
            f"{trace}: {n_sentences} sentences in the matrix but {len(chunk_idx)} chunk indices, "
            f"{len(categories)} categories and {len(receiver_score)} receiver scores"
        )
    by_chunk = {int(label["chunk_idx"]): label for label in record_labels}
    importance = suppression_importance(log_kl, min_distance)
    rows = []
    for sentence, chunk in enumerate(chunk_idx):
        label = by_chunk.get(int(chunk), {})
        row = {
            "trace": trace,
            "sentence": sentence,
            "chunk_idx": int(chunk),
            "category": categories[sentence],
            "suppression_importance": importance[sentence],
            "receiver_score": float(receiver_score[sentence]),
        }
        for metric in IMPORTANCE_METRICS[1:]:
            value = label.get(metric)
            row[metric] = float(value) if isinstance(value, int | float) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


WHITE_TO_REDS = LinearSegmentedColormap.from_list(
    "white_to_reds", ["white", *plt.get_cmap("Reds")(np.linspace(0.15, 1.0, 8))]
)


def figure6_data(trace: str, log_kl: np.ndarray, drawn: Figure6Matrix) -> pd.DataFrame:
    """Tidy data of a drawn matrix: one row per (affected, suppressed) pair with the raw log-KL,
    the plotted value (NaN where blank) and the colour limits."""
    affected, suppressed = np.indices(log_kl.shape)
    return pd.DataFrame(
        {
            "trace": trace,
            "affected_sentence": affected.ravel(),
            "suppressed_sentence": suppressed.ravel(),
            "log_kl": np.asarray(log_kl, dtype=np.float64).ravel(),
            "plotted": drawn.matrix.ravel(),
            "vmin": drawn.vmin,
            "vmax": drawn.vmax,
            "limits_from_distant": drawn.limits_from_distant,
        }
    )


def _draw(axis: plt.Axes, drawn: Figure6Matrix, ticks: int = 10) -> None:
    axis.imshow(drawn.matrix, cmap=WHITE_TO_REDS, vmin=drawn.vmin, vmax=drawn.vmax)
    shown = int(np.flatnonzero(np.isfinite(np.diag(drawn.matrix)))[-1]) + 1
    axis.set_xlim(-0.5, shown - 0.5)
    axis.set_ylim(shown - 0.5, -0.5)
    positions = np.arange(0, shown, ticks)
    axis.set_xticks(positions)
    axis.set_yticks(positions)


def plot_figure6(drawn: Figure6Matrix, title: str) -> Figure:
    """Figure 6: x = suppressed sentence, y = affected sentence, 6 x 6 in."""
    with figure_style():
        figure, axis = plt.subplots(figsize=(6, 6))
        _draw(axis, drawn)
        axis.set_xlabel("Sentence position (suppressed)", fontsize=14)
        axis.set_ylabel("Sentence position (affected)", fontsize=14)
        axis.set_title(title)
        figure.tight_layout()
    return figure


def plot_grid(matrices: dict[str, Figure6Matrix]) -> Figure:
    """Every trace's Figure 6 panel in a grid, in the given order."""
    columns = min(4, max(1, len(matrices)))
    rows = math.ceil(len(matrices) / columns)
    with figure_style():
        figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
        for axis, (trace, drawn) in zip(axes.flat, matrices.items(), strict=False):
            _draw(axis, drawn, ticks=max(10, 10 * (len(drawn.matrix) // 60)))
            axis.set_title(trace, fontsize=10)
        for axis in axes.flat[len(matrices) :]:
            axis.set_axis_off()
        figure.supxlabel("Suppressed sentence")
        figure.supylabel("Affected sentence")
        figure.tight_layout()
    return figure


def plot_link(linked: pd.DataFrame, correlations: pd.DataFrame) -> Figure:
    """Left: Spearman rho of suppression importance with each metric, over all sentences and
    per trace. Right: suppression importance per sentence category."""
    with figure_style():
        figure, (left, right) = plt.subplots(
            1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [1.2, 1]}
        )
        shown = correlations[correlations["scope"].isin(["all", "trace"])]
        groups = list(dict.fromkeys(shown["group"]))
        width = 0.8 / len(IMPORTANCE_METRICS)
        for offset, metric in enumerate(IMPORTANCE_METRICS):
            values = shown[shown["metric"] == metric].set_index("group")["rho"].reindex(groups)
            left.bar(np.arange(len(groups)) + offset * width, values, width, label=metric)
        left.axhline(0, color="black", linewidth=0.8)
        left.set_xticks(np.arange(len(groups)) + width * (len(IMPORTANCE_METRICS) - 1) / 2)
        left.set_xticklabels(groups, rotation=60, ha="right", fontsize=8)
        left.set_ylabel("Spearman rho")
        left.set_title("Suppression importance vs. other scores", fontsize=11)
        left.legend(fontsize=7, loc="best")
        finite = linked[np.isfinite(linked["suppression_importance"])]
        categories = sorted(finite["category"].unique())
        right.boxplot(
            [
                finite.loc[finite["category"] == name, "suppression_importance"]
                for name in categories
            ],
            tick_labels=categories,
        )
        right.tick_params(axis="x", rotation=60, labelsize=8)
        right.set_ylabel("Suppression importance")
        right.set_title("Per category (row-centred log-KL)", fontsize=11)
        figure.tight_layout()
    return figure
