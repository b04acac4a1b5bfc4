"""Tests of the Figure 4 and 5 plotting code: tidy data, fallbacks, byte-stable output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from anchorflow.plots import figure_bytes, save_figure
from anchorflow.plots.receivers import FIGURE4_COLUMNS, figure4_data, plot_figure4, plot_figure5
from anchorflow.receivers.heads import (
    head_kurtosis,
    mean_kurtosis,
    top_receiver_heads,
    vertical_scores,
)
from anchorflow.receivers.reliability import split_half_means, split_half_reliability

CATEGORIES = ["plan_generation", "active_computation", "self_checking"]


@pytest.fixture(scope="module")
def receivers():
    rng = np.random.default_rng(0)
    matrices = np.tril(rng.random((4, 3, 2, 16, 16)) * 0.01)
    matrices[:, 2, 1, :, [3, 9]] += 0.5
    matrices = np.tril(matrices)
    vertical = vertical_scores(matrices, 4)
    kurtosis = head_kurtosis(vertical)
    heads = top_receiver_heads(mean_kurtosis(kurtosis), 3)
    return {"matrices": matrices, "vertical": vertical, "kurtosis": kurtosis, "heads": heads}


def _data(receivers, with_matrix: bool) -> pd.DataFrame:
    layer, head = receivers["heads"][0]
    matrix = receivers["matrices"][0, layer, head] if with_matrix else None
    return figure4_data(
        receivers["kurtosis"],
        split_half_means(receivers["kurtosis"]),
        receivers["heads"],
        "1_correct",
        receivers["vertical"][0],
        matrix,
        (int(layer), int(head)),
        curve_heads=2,
        histogram_bins=10,
    )


def test_figure4_data_panels(receivers):
    data = _data(receivers, with_matrix=True)
    assert list(data.columns) == FIGURE4_COLUMNS
    sizes = data.groupby("panel").size().to_dict()
    assert sizes == {
        "attention_matrix": 16 * 17 // 2,
        "kurtosis_by_layer": 4,
        "kurtosis_histogram": 10,
        "split_half": 4,
        "vertical_scores": 2 * 16,
    }
    by_layer = data[data["panel"] == "kurtosis_by_layer"]
    top = by_layer[by_layer["rank"] == 1]
    assert (top["layer"].item(), top["head"].item()) == (2, 1)
    assert top["y"].item() == pytest.approx(receivers["kurtosis"][:, 2, 1].mean())
    assert data.loc[data["panel"] == "kurtosis_histogram", "y"].sum() == 4
    cells = data[data["panel"] == "attention_matrix"]
    assert (cells["y"] >= cells["x"]).all()
    cell = cells[(cells["y"] == 10) & (cells["x"] == 9)]
    assert cell["value"].item() == pytest.approx(receivers["matrices"][0, 2, 1, 10, 9])
    assert set(data.loc[data["panel"] == "vertical_scores", "rank"]) == {1, 2}


def test_figure4_without_matrix_draws_vertical_scores(receivers):
    data = _data(receivers, with_matrix=False)
    assert "attention_matrix" not in set(data["panel"])
    scores = data[data["panel"] == "matrix_vertical_scores"]
    np.testing.assert_array_equal(scores["y"], receivers["vertical"][0, 2, 1])
    figure = plot_figure4(data, r=0.5)
    titles = [ax.get_title() for ax in figure.axes]
    assert any("vertical scores only" in title for title in titles)


def test_figure4_renders_deterministically(receivers):
    data = _data(receivers, with_matrix=True)
    r = split_half_reliability(receivers["kurtosis"])["r"]
    first = figure_bytes(plot_figure4(data, r), "png", dpi=30)
    assert first == figure_bytes(plot_figure4(data, r), "png", dpi=30)


def test_figure5_box_plot_and_empty_data(tmp_path):
    means = pd.DataFrame(
        {
            "trace": ["1_correct", "2_correct"] * 2,
            "category": ["plan_generation"] * 2 + ["self_checking"] * 2,
            "mean_receiver_score": [1e-3, 2e-3, 3e-4, 5e-4],
        }
    )
    figure = plot_figure5(means, CATEGORIES, "title")
    ax = figure.axes[0]
    assert [label.get_text() for label in ax.get_xticklabels()] == [
        "Plan\nGeneration",
        "Active\nComputation",
        "Self\nChecking",
    ]
    assert ax.get_xticklabels()[0].get_color() == "tab:red"
    save_figure(plot_figure5(means, CATEGORIES, "t"), tmp_path / "a.png", tmp_path / "a.pdf", 30)
    save_figure(plot_figure5(means, CATEGORIES, "t"), tmp_path / "b.png", tmp_path / "b.pdf", 30)
    assert (tmp_path / "a.pdf").read_bytes() == (tmp_path / "b.pdf").read_bytes()
    assert b"CreationDate" not in (tmp_path / "a.pdf").read_bytes()
    empty = plot_figure5(means.iloc[:0], CATEGORIES, "title")
    assert "no category cell" in empty.axes[0].texts[0].get_text()
