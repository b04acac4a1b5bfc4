"""Receiver-head scores against the dataset's black-box importances: the white-box ↔ black-box
validation (the paper: sentences with high receiver scores tend to have high counterfactual
importance).

Per sentence, the receiver score (the top-k heads' mean vertical score, without and with depth
control) is set beside every numeric per-chunk value the dataset carries (``chunks_labeled.json``:
``counterfactual_importance_kl``, ``resampling_importance_accuracy``, ...), matched by
``chunk_idx``. Spearman's rho is computed pooled over all sentences, per trace and per sentence
category; the pooled interval is a percentile bootstrap over traces (whole traces are resampled
with replacement, so sentences of one trace stay together).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

SCORE_COLUMNS = {
    "receiver_score_depth_off": "vertical_scores_depth_off",
    "receiver_score_depth_on": "vertical_scores_depth_on",
}

ID_COLUMNS = ["trace", "sentence", "chunk_idx", "category"]


def blackbox_metrics(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every numeric per-chunk field in the records' ``labels`` (``chunk_idx`` aside), sorted."""
    names = set()
    for record in records:
        for label in record["labels"]:
            names |= {
                key
                for key, value in label.items()
                if isinstance(value, int | float) and not isinstance(value, bool)
            }
    return sorted(names - {"chunk_idx"})


def sentence_table(
    trace: str,
    chunk_idx: Sequence[int],
    categories: Sequence[str],
    scores: Mapping[str, np.ndarray],
    record_labels: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
) -> pd.DataFrame:
    """One row per white-box sentence: ``trace, sentence, chunk_idx, category``, each score of
    ``scores`` (name -> ``[n]``) and each metric (NaN where the dataset has no value)."""
    n = len(chunk_idx)
    if len(categories) != n or any(len(values) != n for values in scores.values()):
        raise ValueError(f"{trace}: {n} sentences but categories or scores of other lengths")
    by_chunk = {int(label["chunk_idx"]): label for label in record_labels}
    frame = pd.DataFrame(
        {
            "trace": trace,
            "sentence": np.arange(n),
            "chunk_idx": np.asarray(chunk_idx, dtype=np.int64),
            "category": list(categories),
        }
    )
    for name, values in scores.items():
        frame[name] = np.asarray(values, dtype=np.float64)
    for metric in metrics:
        column = [by_chunk.get(int(chunk), {}).get(metric) for chunk in chunk_idx]
        frame[metric] = [float(v) if isinstance(v, int | float) else np.nan for v in column]
    return frame


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho over the pairs where both are finite; NaN with fewer than 3 pairs or a
    constant side."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], y[finite]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    return float(np.corrcoef(stats.rankdata(x), stats.rankdata(y))[0, 1])


def trace_bootstrap(
    groups: Sequence[tuple[np.ndarray, np.ndarray]], n_bootstrap: int, seed: int
) -> tuple[float, float]:
    """Percentile 95 % interval of the pooled rho when whole traces are resampled:
    ``groups`` holds each trace's ``(x, y)``; NaN when no replicate has a rho."""
    if not groups or n_bootstrap < 1:
        return np.nan, np.nan
    rng = np.random.default_rng(seed)
    replicates = np.empty(n_bootstrap)
    for b in range(n_bootstrap):
        picks = rng.integers(0, len(groups), size=len(groups))
        x = np.concatenate([groups[i][0] for i in picks])
        y = np.concatenate([groups[i][1] for i in picks])
        replicates[b] = spearman(x, y)
    replicates = replicates[np.isfinite(replicates)]
    if replicates.size == 0:
        return np.nan, np.nan
    low, high = np.percentile(replicates, [2.5, 97.5])
    return float(low), float(high)


def per_trace_table(
    frame: pd.DataFrame, scores: Sequence[str], metrics: Sequence[str]
) -> pd.DataFrame:
    """Spearman's rho within each trace: ``score, metric, trace, n_sentences, rho``."""
    rows = []
    for score in scores:
        for metric in metrics:
            for trace, part in frame.groupby("trace", sort=True):
                usable = np.isfinite(part[score]) & np.isfinite(part[metric])
                rows.append(
                    {
                        "score": score,
                        "metric": metric,
                        "trace": trace,
                        "n_sentences": int(usable.sum()),
                        "rho": spearman(part[score], part[metric]),
                    }
                )
    return pd.DataFrame(rows, columns=["score", "metric", "trace", "n_sentences", "rho"])


def top_sentence_agreement(frame: pd.DataFrame, score: str, metric: str) -> float:
    """Share of traces whose highest-scoring sentence is also their highest-``metric`` one
    (among sentences with both values); NaN when no trace has any."""
    hits = []
    for _, part in frame.groupby("trace", sort=True):
        usable = part[np.isfinite(part[score]) & np.isfinite(part[metric])]
        if len(usable):
            hits.append(usable[score].idxmax() == usable[metric].idxmax())
    return float(np.mean(hits)) if hits else np.nan


def correlation_table(
    frame: pd.DataFrame,
    scores: Sequence[str],
    metrics: Sequence[str],
    n_bootstrap: int,
    seed: int,
    per_trace: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Pooled rho with its trace-bootstrap interval, over all sentences (``scope`` all) and
    within each category (``scope`` category), with the per-trace rho's median and share above
    0 and the top-sentence agreement: one row per (score, metric, scope, group).
    ``per_trace``: the :func:`per_trace_table` of the same frame, when the caller has it."""
    if per_trace is None:
        per_trace = per_trace_table(frame, scores, metrics)
    parts = [("all", "all", frame)] + [
        ("category", str(category), part) for category, part in frame.groupby("category", sort=True)
    ]
    rows = []
    for score in scores:
        for metric in metrics:
            for scope, group, part in parts:
                usable = part[np.isfinite(part[score]) & np.isfinite(part[metric])]
                groups = [
                    (rows_[score].to_numpy(), rows_[metric].to_numpy())
                    for _, rows_ in usable.groupby("trace", sort=True)
                ]
                low, high = trace_bootstrap(groups, n_bootstrap, seed)
                row = {
                    "score": score,
                    "metric": metric,
                    "scope": scope,
                    "group": group,
                    "n_sentences": len(usable),
                    "n_traces": len(groups),
                    "rho": spearman(usable[score], usable[metric]),
                    "ci_low": low,
                    "ci_high": high,
                }
                if scope == "all":
                    traced = per_trace[
                        (per_trace["score"] == score) & (per_trace["metric"] == metric)
                    ]
                    finite = traced["rho"].dropna()
                    row["per_trace_median"] = float(finite.median()) if len(finite) else np.nan
                    row["per_trace_positive"] = (
                        float((finite > 0).mean()) if len(finite) else np.nan
                    )
                    row["top_sentence_agreement"] = top_sentence_agreement(part, score, metric)
                rows.append(row)
    return pd.DataFrame(rows)
