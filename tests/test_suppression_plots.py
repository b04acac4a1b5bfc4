"""Figure 6 preparation, suppression importance, the linking tables and the figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from anchorflow.plots import save_figure
from anchorflow.plots.suppression import (
    correlation_table,
    figure6_data,
    figure6_matrix,
    link_table,
    plot_figure6,
    plot_grid,
    plot_link,
    row_centred,
    suppression_importance,
)
from anchorflow.suppression.matrix import extreme_sentences


def random_log_kl(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    matrix = rng.normal(-5, 2, size=(n, n))
    matrix[np.triu_indices(n, k=1)] = np.log(1e-9)
    return matrix


def test_figure6_matrix_follows_the_specification() -> None:
    log_kl = random_log_kl(30)
    drawn = figure6_matrix(log_kl)
    n = len(log_kl)
    for i in range(1, n):
        expected = log_kl[i, :i] - log_kl[i, :i].mean()
        np.testing.assert_allclose(drawn.matrix[i, :i], expected)
        assert np.isnan(drawn.matrix[i, i + 1 :]).all()
    centred = row_centred(log_kl)
    painted = np.nanquantile(centred, 0.99)
    np.testing.assert_allclose(np.diag(drawn.matrix), painted)
    distant = [centred[i, j] for i in range(n) for j in range(n) if i - j >= 11]
    assert drawn.vmin == pytest.approx(np.quantile(distant, 0.5))
    assert drawn.vmax == pytest.approx(np.quantile(distant, 0.998))
    assert drawn.limits_from_distant


def test_figure6_limits_fall_back_on_short_traces() -> None:
    drawn = figure6_matrix(random_log_kl(6))
    assert not drawn.limits_from_distant
    with pytest.raises(ValueError, match="no finite entry"):
        figure6_matrix(np.full((3, 3), np.nan))


def test_suppression_importance_is_mean_downstream_centred_effect() -> None:
    log_kl = random_log_kl(8, seed=2)
    centred = row_centred(log_kl)
    importance = suppression_importance(log_kl, min_distance=2)
    for s in range(8):
        rows = [centred[i, s] for i in range(s + 2, 8)]
        expected = np.mean(rows) if rows else np.nan
        np.testing.assert_allclose(importance[s], expected)
    assert np.isnan(importance[-2:]).all()


def linked_frame() -> pd.DataFrame:
    frames = []
    for index, trace in enumerate(["1_correct", "2_incorrect"]):
        log_kl = random_log_kl(12, seed=index)
        labels = [
            {"chunk_idx": c, "counterfactual_importance_kl": float(c % 5), "other": "x"}
            for c in range(11)
        ]
        frames.append(
            link_table(
                trace,
                log_kl,
                list(range(12)),
                ["plan_generation", "active_computation"] * 6,
                np.linspace(0, 1, 12),
                labels,
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_link_table_aligns_by_chunk_idx() -> None:
    linked = linked_frame()
    assert len(linked) == 24
    first = linked[linked["trace"] == "1_correct"]
    assert first["counterfactual_importance_kl"].iloc[7] == 2.0
    assert np.isnan(first["counterfactual_importance_kl"].iloc[11])
    assert first["resampling_importance_accuracy"].isna().all()
    with pytest.raises(ValueError, match="sentences in the matrix"):
        link_table("1_correct", random_log_kl(3), [0, 1], ["a"] * 3, [0.0] * 3, [])


def test_correlation_table_matches_scipy() -> None:
    linked = linked_frame()
    table = correlation_table(linked)
    overall = table[(table["scope"] == "all") & (table["metric"] == "receiver_score")].iloc[0]
    finite = linked.dropna(subset=["suppression_importance"])
    expected = spearmanr(finite["suppression_importance"], finite["receiver_score"])
    assert overall["rho"] == pytest.approx(expected.statistic)
    assert overall["n"] == len(finite)
    empty = table[table["metric"] == "resampling_importance_accuracy"]
    assert (empty["n"] == 0).all() and empty["rho"].isna().all()
    assert set(table["scope"]) == {"all", "trace", "category"}


def test_extreme_sentences() -> None:
    scores = np.array([0.2, np.nan, 0.9, 0.1, 0.95])
    usable = np.array([True, True, True, True, False])
    assert extreme_sentences(scores, usable) == {"highest": 2, "lowest": 3}
    with pytest.raises(ValueError, match="fewer than two"):
        extreme_sentences(scores, np.array([False, True, False, False, False]))


def test_figures_render(tmp_path) -> None:  # noqa: ANN001
    log_kl = random_log_kl(25)
    drawn = figure6_matrix(log_kl)
    data = figure6_data("1_correct", log_kl, drawn)
    assert len(data) == 625 and data["plotted"].notna().sum() == 300 + 25
    save_figure(plot_figure6(drawn, "Problem: 1 (correct)"), tmp_path / "a.png", tmp_path / "a.pdf")
    grid = {"1_correct": drawn, "2_correct": figure6_matrix(random_log_kl(12, 1))}
    save_figure(plot_grid(grid), tmp_path / "b.png", tmp_path / "b.pdf")
    linked = linked_frame()
    save_figure(
        plot_link(linked, correlation_table(linked)), tmp_path / "c.png", tmp_path / "c.pdf"
    )
    assert all((tmp_path / name).stat().st_size > 1000 for name in ["a.png", "b.pdf", "c.png"])


def test_sentences_beyond_the_cut_stay_blank() -> None:
    log_kl = random_log_kl(15)
    log_kl[10:] = np.nan
    log_kl[:, 10:] = np.nan
    drawn = figure6_matrix(log_kl)
    assert np.isfinite(np.diag(drawn.matrix)[:10]).all()
    assert np.isnan(drawn.matrix[10:]).all()
