"""Tests of anchorflow.receivers: exact oracles (method reference §12), naive loops, invariants."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml
from real_data import QWEN14B_ROLLOUTS, REPO_ROOT, real_trace_folders
from scipy import stats
from test_parity import reference_vertical_scores

from anchorflow.receivers.analysis import (
    analyse_receivers,
    kurtosis_array,
    kurtosis_table,
    receiver_heads_table,
    receiver_score_table,
    reliability_table,
)
from anchorflow.receivers.categories import (
    category_means,
    paired_ttests,
    sentence_categories,
    with_categories,
)
from anchorflow.receivers.heads import (
    check_vertical_parameters,
    head_kurtosis,
    mean_kurtosis,
    rank_heads,
    receiver_scores,
    top_receiver_heads,
    vertical_scores,
)
from anchorflow.receivers.reliability import (
    bootstrap_top_k_jaccard,
    jaccard,
    reliability_order,
    split_half_reliability,
)

ORACLE = np.array(
    [
        [1.0, 0.0, 0.0, 0.0],
        [0.7, 1.0, 0.0, 0.0],
        [0.6, 0.8, 1.0, 0.0],
        [0.9, 0.4, 0.3, 1.0],
    ]
)


def test_vertical_scores_oracle():
    np.testing.assert_allclose(vertical_scores(ORACLE, 2), [0.75, 0.4, np.nan, np.nan])
    np.testing.assert_allclose(
        vertical_scores(ORACLE, 2, control_depth=True), [1.0, 0.5, np.nan, np.nan]
    )


@pytest.mark.parametrize("control_depth", [False, True])
@pytest.mark.parametrize("proximity_ignore", [0, 1, 2, 4, 9])
def test_vertical_scores_match_naive_loop(proximity_ignore, control_depth):
    rng = np.random.default_rng(proximity_ignore)
    matrices = rng.random((2, 3, 9, 9))
    matrices[0, 1, 5, :] = np.nan  # a skipped query sentence
    matrices[1, 2] = np.round(matrices[1, 2], 1)  # ties
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = vertical_scores(matrices, proximity_ignore, control_depth)
    assert scores.shape == (2, 3, 9)
    for index in np.ndindex(2, 3):
        expected = reference_vertical_scores(matrices[index], proximity_ignore, control_depth)
        np.testing.assert_allclose(scores[index], expected, rtol=1e-12)


@pytest.mark.parametrize("control_depth", [False, True])
def test_vertical_scores_ignore_upper_triangle_and_band(control_depth):
    rng = np.random.default_rng(1)
    matrix = rng.random((12, 12))
    rows, cols = np.indices(matrix.shape)
    changed = np.where(rows - cols < 3, rng.random(matrix.shape) * 100 - 50, matrix)
    assert not np.allclose(changed, matrix)
    np.testing.assert_array_equal(
        vertical_scores(matrix, 3, control_depth), vertical_scores(changed, 3, control_depth)
    )


def test_vertical_scores_last_columns_nan():
    scores = vertical_scores(np.random.default_rng(2).random((5, 10, 10)), 4)
    assert np.isnan(scores[:, -4:]).all()
    assert np.isfinite(scores[:, :-4]).all()


def test_depth_controlled_scores_in_unit_interval_and_rank_invariant():
    rng = np.random.default_rng(3)
    matrix = rng.random((15, 15))
    controlled = vertical_scores(matrix, 2, control_depth=True)
    finite = controlled[~np.isnan(controlled)]
    assert finite.size == 13
    assert np.all((finite > 0) & (finite <= 1))
    row_scale = rng.random((15, 1)) + 0.1
    transformed = np.exp(3 * matrix) * row_scale + rng.random((15, 1))
    np.testing.assert_allclose(vertical_scores(transformed, 2, control_depth=True), controlled)
    assert not np.allclose(vertical_scores(transformed, 2), vertical_scores(matrix, 2))


def test_vertical_scores_reject_bad_input():
    with pytest.raises(ValueError, match="n, n"):
        vertical_scores(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="proximity_ignore"):
        vertical_scores(np.zeros((3, 3)), -1)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.1, 0.1, 0.1, 5.0, 0.1, 0.1], 1.2),
        (np.arange(1.0, 1.51, 0.1), -1.2686),
        ([0.5, 1, np.nan, 1.5, 2, np.nan], -1.36),
    ],
)
def test_kurtosis_arena_values(values, expected):
    assert head_kurtosis(np.array(values)) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    "values", [[1.0, 2.0, 3.0], [1.0, np.nan, 2.0, 3.0, np.nan], [np.nan] * 6, [2.0] * 8, []]
)
def test_kurtosis_undefined_gives_nan(values):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(head_kurtosis(np.array(values)))


def test_kurtosis_matches_scipy_vectorised():
    rng = np.random.default_rng(4)
    scores = rng.gamma(0.5, size=(3, 5, 30))
    scores[..., -4:] = np.nan
    scores[1, 2, :10] = np.nan
    expected = stats.kurtosis(scores, axis=-1, fisher=True, bias=True, nan_policy="omit")
    np.testing.assert_allclose(head_kurtosis(scores), np.asarray(expected), rtol=1e-10)


def test_mean_kurtosis_plain_mean():
    kurtosis = np.array([[[1.0, np.nan]], [[3.0, 2.0]]])
    np.testing.assert_array_equal(mean_kurtosis(kurtosis), [[2.0, np.nan]])
    with pytest.raises(ValueError):
        mean_kurtosis(np.zeros((0, 2, 2)))


def test_top_heads_order_nan_and_layer0():
    values = np.array([[9.0, 1.0, np.nan], [2.0, 5.0, 5.0], [np.nan, 7.0, 0.0]])
    np.testing.assert_array_equal(
        top_receiver_heads(values, 3, exclude_layer0=True), [[2, 1], [1, 1], [1, 2]]
    )
    np.testing.assert_array_equal(
        top_receiver_heads(values, 2, exclude_layer0=False), [[0, 0], [2, 1]]
    )
    assert len(rank_heads(values, exclude_layer0=False)) == 7
    assert len(top_receiver_heads(values, 20)) == 5


def test_top_heads_match_naive_sort():
    rng = np.random.default_rng(5)
    values = rng.normal(size=(6, 7))
    naive = sorted(
        ((values[layer, head], layer, head) for layer in range(1, 6) for head in range(7)),
        reverse=True,
    )
    expected = [[layer, head] for _, layer, head in naive[:10]]
    np.testing.assert_array_equal(top_receiver_heads(values, 10), expected)


def test_spiky_head_ranked_first():
    """Synthetic traces: one head attends to a few sentences; it must rank first."""
    rng = np.random.default_rng(6)
    n_traces, layers, heads, n = 6, 3, 4, 40
    matrices = rng.random((n_traces, layers, heads, n, n)) * 0.01
    for trace in range(n_traces):
        anchors = rng.choice(n - 8, size=3, replace=False)
        matrices[trace, 2, 1, :, anchors] += 0.5
    vertical = vertical_scores(matrices, 4)
    kurtosis = head_kurtosis(vertical)
    np.testing.assert_array_equal(top_receiver_heads(mean_kurtosis(kurtosis), 3)[0], [2, 1])


def test_receiver_scores_mean_of_selected_heads():
    rng = np.random.default_rng(7)
    vertical = rng.random((3, 4, 10))
    vertical[..., -2:] = np.nan
    heads = np.array([[1, 2], [2, 0]])
    expected = (vertical[1, 2] + vertical[2, 0]) / 2
    np.testing.assert_array_equal(receiver_scores(vertical, heads), expected)
    with pytest.raises(ValueError):
        receiver_scores(vertical, np.zeros((0, 2)))


def test_reliability_order_is_documented_order():
    traces = ["20_incorrect", "3_correct", "100_correct", "3_incorrect"]
    assert reliability_order(traces) == ["3_correct", "100_correct", "3_incorrect", "20_incorrect"]
    with pytest.raises(ValueError, match="bad trace id"):
        reliability_order(["3_wrong"])


def test_split_half_identical_halves_give_r_one():
    rng = np.random.default_rng(8)
    per_trace = rng.normal(size=(1, 4, 5))
    kurtosis = np.repeat(per_trace, 4, axis=0)
    kurtosis[:, 0] = np.nan  # layer 0 is ignored
    result = split_half_reliability(kurtosis)
    assert result["r"] == pytest.approx(1.0)
    assert result["n_heads"] == 15
    assert result["n_heads_nan"] == 0


def test_split_half_matches_naive():
    rng = np.random.default_rng(9)
    kurtosis = rng.normal(size=(7, 4, 3))
    kurtosis[2, 3, 1] = np.nan
    first = [kurtosis[t] for t in range(0, 7, 2)]
    second = [kurtosis[t] for t in range(1, 7, 2)]
    x, y = [], []
    for layer in range(1, 4):
        for head in range(3):
            a = np.mean([k[layer, head] for k in first])
            b = np.mean([k[layer, head] for k in second])
            if np.isfinite(a) and np.isfinite(b):
                x.append(a)
                y.append(b)
    result = split_half_reliability(kurtosis)
    assert result["n_heads"] == 8 and result["n_heads_nan"] == 1
    assert result["r"] == pytest.approx(stats.pearsonr(x, y).statistic)
    assert (result["n_first"], result["n_second"]) == (4, 3)


def test_split_half_degenerate_gives_nan():
    assert np.isnan(split_half_reliability(np.ones((4, 3, 2)))["r"])
    with pytest.raises(ValueError):
        split_half_reliability(np.ones((1, 3, 2)))


def test_jaccard():
    assert jaccard(np.array([[1, 2], [3, 4]]), np.array([[3, 4], [5, 6]])) == pytest.approx(1 / 3)


def test_bootstrap_jaccard_seeded_and_bounded():
    rng = np.random.default_rng(10)
    kurtosis = rng.normal(size=(8, 4, 6))
    first = bootstrap_top_k_jaccard(kurtosis, 5, True, 50, seed=3)
    assert first.shape == (50,)
    assert np.all((first >= 0) & (first <= 1))
    np.testing.assert_array_equal(first, bootstrap_top_k_jaccard(kurtosis, 5, True, 50, seed=3))
    stable = np.repeat(kurtosis[:1], 8, axis=0)
    np.testing.assert_array_equal(bootstrap_top_k_jaccard(stable, 5, True, 20, seed=0), 1.0)


def _analysis(n_traces: int = 4, layers: int = 3, heads: int = 4, n: int = 12):
    rng = np.random.default_rng(11)
    traces = [f"{100 + t // 2}_{'correct' if t % 2 == 0 else 'incorrect'}" for t in range(n_traces)]
    vertical = {trace: rng.random((layers, heads, n)) for trace in traces}
    for scores in vertical.values():
        scores[..., -4:] = np.nan
    return analyse_receivers(vertical, top_k=3, n_bootstrap=10, seed=0), vertical


def test_analysis_tables_roundtrip_and_contract_columns():
    analysis, vertical = _analysis()
    assert analysis.traces == ["100_correct", "101_correct", "100_incorrect", "101_incorrect"]
    table = kurtosis_table(analysis)
    assert list(table.columns) == ["layer", "head", "trace", "kurtosis"]
    assert len(table) == 4 * 3 * 4
    np.testing.assert_array_equal(kurtosis_array(table, analysis.traces), analysis.kurtosis)
    row = table[(table["trace"] == "101_correct") & (table["layer"] == 2) & (table["head"] == 3)]
    assert row["kurtosis"].item() == pytest.approx(head_kurtosis(vertical["101_correct"][2, 3]))
    heads = receiver_heads_table(analysis)
    assert list(heads.columns) == ["rank", "layer", "head", "mean_kurtosis"]
    assert heads["rank"].tolist() == [1, 2, 3]
    assert heads["mean_kurtosis"].is_monotonic_decreasing
    reliability = reliability_table(analysis, 3, True, 0)
    assert reliability["trace_order"].item().split(",") == analysis.traces
    assert reliability["n_bootstrap"].item() == 10


def test_receiver_score_table_uses_chunk_idx_and_checks_length():
    analysis, vertical = _analysis()
    chunks = {trace: list(range(5, 17)) for trace in vertical}
    table = receiver_score_table(analysis, vertical, chunks)
    assert list(table.columns) == ["trace", "sentence", "chunk_idx", "receiver_score"]
    first = table[table["trace"] == "100_correct"]
    assert first["chunk_idx"].tolist() == list(range(5, 17))
    np.testing.assert_array_equal(
        first["receiver_score"], receiver_scores(vertical["100_correct"], analysis.heads)
    )
    chunks["101_incorrect"] = list(range(11))
    with pytest.raises(ValueError, match="101_incorrect: 12 sentences"):
        receiver_score_table(analysis, vertical, chunks)


def test_analysis_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same|must all"):
        analyse_receivers({"1_correct": np.zeros((2, 3, 8)), "1_incorrect": np.zeros((2, 4, 8))})
    with pytest.raises(ValueError, match=">= 2 traces"):
        analyse_receivers({"1_correct": np.zeros((2, 3, 8))})


def test_check_vertical_parameters():
    check_vertical_parameters({"params": {"proximity_ignore": 4}}, {"proximity_ignore": 4}, "f")
    with pytest.raises(ValueError, match="proximity_ignore=2"):
        check_vertical_parameters({"proximity_ignore": 2}, {"proximity_ignore": 4}, "f")


LABELS = [
    {"chunk_idx": 0, "text": "a", "function_tags": ["problem_setup"], "depends_on": []},
    {"chunk_idx": 1, "text": "b", "function_tags": ["plan_generation", "x"], "depends_on": []},
    {"chunk_idx": 2, "text": "c", "function_tags": [], "depends_on": [0]},
]


def test_sentence_categories_by_chunk_idx():
    assert sentence_categories(LABELS, [2, 0, 1]) == ["unknown", "problem_setup", "plan_generation"]
    with pytest.raises(ValueError, match="no label for chunk_idx"):
        sentence_categories(LABELS, [0, 3])


def test_with_categories_requires_every_trace():
    scores = pd.DataFrame({"trace": ["1_correct"] * 2, "chunk_idx": [1, 0], "receiver_score": 1.0})
    tagged = with_categories(scores, {"1_correct": LABELS})
    assert tagged["category"].tolist() == ["plan_generation", "problem_setup"]
    with pytest.raises(ValueError, match="no labels file"):
        with_categories(scores.assign(trace="2_correct"), {"1_correct": LABELS})


def test_category_means_min_count_and_counts():
    scored = pd.DataFrame(
        {
            "trace": ["1_correct"] * 7 + ["2_correct"] * 3,
            "category": ["a", "a", "a", "b", "b", "c", "a", "a", "a", "b"],
            "receiver_score": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, np.nan, 1.0, 1.0, 2.0],
        }
    )
    means, counts = category_means(scored, ["b", "a"], min_count=2)
    assert means[["trace", "category"]].values.tolist() == [["1_correct", "a"]]
    assert means["mean_receiver_score"].tolist() == [2.0]
    assert counts == {
        "n_sentences_nan_score": 1,
        "n_sentences_other_category": 1,
        "n_cells_below_min_count": 3,
        "n_cells": 1,
    }
    means, _ = category_means(scored, ["b", "a"], min_count=0)
    assert means["category"].tolist() == ["b", "b", "a", "a"]


def test_paired_ttests_match_scipy_for_every_ordered_pair():
    rng = np.random.default_rng(12)
    rows = [
        {"trace": f"{t}_correct", "category": c, "mean_receiver_score": rng.random()}
        for t in range(6)
        for c in ["a", "b", "c"]
        if not (c == "c" and t < 2)
    ]
    means = pd.DataFrame(rows)
    table = paired_ttests(means, ["a", "b", "c", "d"])
    assert len(table) == 12
    wide = means.pivot(index="trace", columns="category", values="mean_receiver_score")
    row = table[(table["category_a"] == "c") & (table["category_b"] == "a")].iloc[0]
    both = wide[["c", "a"]].dropna()
    expected = stats.ttest_rel(both["c"], both["a"])
    assert row["n"] == 4
    assert row["t"] == pytest.approx(expected.statistic)
    assert row["p"] == pytest.approx(expected.pvalue)
    missing = table[table["category_a"] == "d"]
    assert (missing["n"] == 0).all() and missing["t"].isna().all()


def test_real_labels_cover_figure5_categories():
    """Every white-box sentence of the 20 real qwen-14b traces maps to a label, and every default
    Figure 5 category occurs in the real labels."""
    schema = yaml.safe_load((REPO_ROOT / "schemas" / "config.schema.yaml").read_text())
    default_categories = schema["$defs"]["receivers"]["properties"]["categories"]["default"]
    folders = [folder for folder in real_trace_folders() if QWEN14B_ROLLOUTS in str(folder)]
    assert len(folders) == 20
    seen: set[str] = set()
    for folder in folders:
        chunks = json.loads((folder / "chunks_labeled.json").read_text())
        categories = sentence_categories(chunks, list(range(len(chunks) - 1)))
        assert len(categories) == len(chunks) - 1
        assert "unknown" not in categories
        seen.update(categories)
    assert set(default_categories) <= seen
    assert {"problem_setup", "final_answer_emission"} <= seen - set(default_categories)
