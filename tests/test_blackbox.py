"""The white-box / black-box validation: Spearman rho against its definition, the trace bootstrap
against a direct loop, chunk matching, the sign on planted agreement, and the real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from real_data import PAPER_PROBLEMS, QWEN14B_ROLLOUTS, REAL_ROLLOUTS, SAMPLING_FOLDER
from scipy import stats

from anchorflow.data.rollouts import acquire, requested_traces
from anchorflow.receivers.blackbox import (
    blackbox_metrics,
    correlation_table,
    per_trace_table,
    sentence_table,
    spearman,
    top_sentence_agreement,
    trace_bootstrap,
)


def test_spearman_is_scipys_over_the_finite_pairs():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=40), rng.normal(size=40)
    y[:5] = x[:5] * 3  # some ties and structure
    x[7], y[11] = np.nan, np.inf
    finite = np.isfinite(x) & np.isfinite(y)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x[finite], y[finite])[0], abs=1e-12)
    assert spearman(np.exp(x), y) == pytest.approx(spearman(x, y), abs=1e-12)  # monotone
    assert np.isnan(spearman([1, 2], [3, 4])) and np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_trace_bootstrap_equals_a_direct_resampling_loop():
    rng = np.random.default_rng(1)
    groups = [(rng.normal(size=n), rng.normal(size=n)) for n in (5, 9, 7, 12)]
    low, high = trace_bootstrap(groups, n_bootstrap=300, seed=3)
    draws = np.random.default_rng(3)
    replicates = []
    for _ in range(300):
        picks = draws.integers(0, 4, size=4)
        x = np.concatenate([groups[i][0] for i in picks])
        y = np.concatenate([groups[i][1] for i in picks])
        replicates.append(stats.spearmanr(x, y)[0])
    assert (low, high) == pytest.approx(tuple(np.percentile(replicates, [2.5, 97.5])), abs=1e-12)


def test_metrics_are_matched_by_chunk_index_never_by_position():
    labels = [{"chunk_idx": 0, "m": 0.5}, {"chunk_idx": 2, "m": 2.5}, {"chunk_idx": 3, "m": 3.5}]
    table = sentence_table(
        "t", [0, 2, 3, 5], ["a", "b", "a", "b"], {"s": np.arange(4.0)}, labels, ["m"]
    )
    assert table["m"].tolist()[:3] == [0.5, 2.5, 3.5] and np.isnan(table["m"].iloc[3])
    assert table["chunk_idx"].tolist() == [0, 2, 3, 5]
    with pytest.raises(ValueError, match="4 sentences"):
        sentence_table("t", [0, 2, 3, 5], ["a"], {"s": np.arange(4.0)}, labels, ["m"])


def planted_frame(sign: float, n_traces: int = 8, n: int = 30) -> pd.DataFrame:
    """Traces whose metric follows the score (``sign`` 1) or its opposite (-1), with noise."""
    rng = np.random.default_rng(7)
    frames = []
    for t in range(n_traces):
        score = rng.gamma(2.0, size=n)
        metric = sign * score + rng.normal(scale=0.5, size=n)
        frames.append(
            pd.DataFrame(
                {
                    "trace": f"{t}_correct",
                    "sentence": np.arange(n),
                    "chunk_idx": np.arange(n),
                    "category": np.where(np.arange(n) % 2, "plan_generation", "active_computation"),
                    "score": score,
                    "metric": metric,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_planted_agreement_gives_the_planted_sign(sign):
    frame = planted_frame(sign)
    table = correlation_table(frame, ["score"], ["metric"], n_bootstrap=200, seed=0)
    pooled = table[table["scope"] == "all"].iloc[0]
    assert np.sign(pooled["rho"]) == sign and abs(pooled["rho"]) > 0.6
    assert pooled["ci_low"] <= pooled["rho"] <= pooled["ci_high"]
    assert np.sign(pooled["ci_low"]) == np.sign(pooled["ci_high"]) == sign  # excludes 0
    assert pooled["per_trace_positive"] == (1.0 if sign > 0 else 0.0)
    categories = table[table["scope"] == "category"]
    assert set(categories["group"]) == {"plan_generation", "active_computation"}
    assert (np.sign(categories["rho"]) == sign).all()
    assert pooled["n_sentences"] == len(frame) and pooled["n_traces"] == 8


def test_per_trace_rho_and_top_sentence_agreement_by_hand():
    frame = planted_frame(1.0, n_traces=3, n=10)
    per_trace = per_trace_table(frame, ["score"], ["metric"])
    for trace, part in frame.groupby("trace"):
        expected = stats.spearmanr(part["score"], part["metric"])[0]
        assert per_trace.set_index("trace").loc[trace, "rho"] == pytest.approx(expected)
    frame["metric"] = frame["score"]
    assert top_sentence_agreement(frame, "score", "metric") == 1.0
    frame.loc[frame.groupby("trace")["score"].idxmax().iloc[0], "metric"] = -1.0
    assert top_sentence_agreement(frame, "score", "metric") == pytest.approx(2 / 3)


def test_on_the_real_traces_every_black_box_metric_is_found_and_matched():
    requests = requested_traces([QWEN14B_ROLLOUTS], PAPER_PROBLEMS, ["correct", "incorrect"])
    records, _ = acquire(str(REAL_ROLLOUTS), requests, SAMPLING_FOLDER)
    metrics = blackbox_metrics(records)
    assert {"counterfactual_importance_kl", "resampling_importance_accuracy"} <= set(metrics)
    assert "chunk_idx" not in metrics and len(metrics) == 9
    frames = []
    for record in records:
        chunk_idx = [label["chunk_idx"] for label in record["labels"]]
        own = np.array([label["counterfactual_importance_kl"] for label in record["labels"]])
        categories = [label["function_tags"][0] for label in record["labels"]]
        frames.append(
            sentence_table(
                record["trace"], chunk_idx, categories, {"own": own}, record["labels"], metrics
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    table = correlation_table(frame, ["own"], metrics, n_bootstrap=20, seed=0)
    itself = table[(table["metric"] == "counterfactual_importance_kl") & (table["scope"] == "all")]
    assert itself.iloc[0]["rho"] == pytest.approx(1.0)
    assert itself.iloc[0]["n_traces"] == len(records) == 20
