"""Tables of counterfactual importance under ablation (the ablation study's outputs): both
similarities side by side, the change of each sentence's importance against no ablation, the
greatest increases and decreases, and "dropdown" runs of near-zero importance.

Every function takes the per-sentence frame of the counterfactual rule (``importance.tsv``:
``condition, kind, trace, sentence, category`` and the importance columns); ``kind`` is
``baseline`` (no ablation), ``receivers`` or ``random`` (one condition per matched draw).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

KEYS = ["trace", "sentence"]


def similarity_by_category(per_sentence: pd.DataFrame, suffixes: Mapping[str, str]) -> pd.DataFrame:
    """Per (similarity, kind, category): sentences, the mean and standard error of the
    importance, and the distribution of the per-sentence similarities (mean of their means,
    mean of their standard deviations). ``suffixes``: similarity name -> the suffix of its
    columns (:func:`~anchorflow.interventions.counterfactual.similarity_suffixes`)."""
    rows = []
    for name, suffix in suffixes.items():
        importance = f"counterfactual_importance_kl{suffix}"
        for (kind, category), group in per_sentence.groupby(["kind", "category"], sort=True):
            rows.append(
                {
                    "similarity": name,
                    "kind": kind,
                    "category": category,
                    "n_sentences": len(group),
                    "importance_mean": float(group[importance].mean()),
                    "importance_sem": float(group[importance].sem())
                    if len(group) > 1
                    else math.nan,
                    "similarity_mean": float(group[f"similarity_mean{suffix}"].mean()),
                    "similarity_spread": float(group[f"similarity_sd{suffix}"].mean()),
                }
            )
    return pd.DataFrame(rows)


def importance_changes(per_sentence: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per ablated condition and sentence: ``baseline_importance`` (no ablation), ``importance``
    and ``change`` = importance - baseline, matched by (trace, sentence)."""
    baseline = per_sentence[per_sentence["kind"] == "baseline"].set_index(KEYS)[metric]
    ablated = per_sentence[per_sentence["kind"] != "baseline"]
    frame = ablated[["condition", "kind", *KEYS, "category", metric]].rename(
        columns={metric: "importance"}
    )
    frame.insert(
        5, "baseline_importance", baseline.reindex(pd.MultiIndex.from_frame(frame[KEYS])).to_numpy()
    )
    frame["change"] = frame["importance"] - frame["baseline_importance"]
    return frame.reset_index(drop=True)


def change_by_category(changes: pd.DataFrame) -> pd.DataFrame:
    """Per (kind, category): sentences, mean change and mean absolute change (random draws
    pooled)."""
    return (
        changes.assign(abs_change=changes["change"].abs())
        .groupby(["kind", "category"], sort=True)
        .agg(
            n=("change", "size"),
            mean_change=("change", "mean"),
            mean_abs_change=("abs_change", "mean"),
        )
        .reset_index()
    )


def top_changes(changes: pd.DataFrame, k: int) -> pd.DataFrame:
    """The ``k`` greatest increases and decreases per kind (a random sentence's change is its
    mean over the draws): ``kind, direction, rank, trace, sentence, category, change``."""
    rows = []
    for kind, group in changes.groupby("kind", sort=True):
        per_sentence = group.groupby([*KEYS, "category"], sort=True)["change"].mean().reset_index()
        for direction, ascending in (("increase", False), ("decrease", True)):
            ordered = per_sentence.sort_values(["change", *KEYS], ascending=[ascending, True, True])
            chosen = (
                ordered[ordered["change"] > 0]
                if direction == "increase"
                else ordered[ordered["change"] < 0]
            )
            for rank, row in enumerate(chosen.head(k).itertuples(index=False), start=1):
                rows.append({"kind": kind, "direction": direction, "rank": rank, **row._asdict()})
    columns = ["kind", "direction", "rank", *KEYS, "category", "change"]
    return pd.DataFrame(rows, columns=columns)


def dropdown_runs(importance: Sequence[float], min_length: int, epsilon: float) -> list[int]:
    """Lengths of the maximal runs of at least ``min_length`` consecutive sentences whose
    ``|importance| < epsilon`` (NaN ends a run), in order."""
    runs, length = [], 0
    for value in [*importance, math.nan]:
        if np.isfinite(value) and abs(value) < epsilon:
            length += 1
            continue
        if length >= min_length:
            runs.append(length)
        length = 0
    return runs


def dropdown_table(
    per_sentence: pd.DataFrame, metric: str, min_length: int, epsilon: float
) -> pd.DataFrame:
    """Per (condition, trace): the dropdown runs' count, lengths and the sentences in them."""
    rows = []
    for (condition, kind, trace), group in per_sentence.groupby(
        ["condition", "kind", "trace"], sort=True
    ):
        runs = dropdown_runs(group.sort_values("sentence")[metric].to_numpy(), min_length, epsilon)
        rows.append(
            {
                "condition": condition,
                "kind": kind,
                "trace": trace,
                "n_sentences": len(group),
                "n_runs": len(runs),
                "lengths": " ".join(map(str, runs)),
                "in_runs": sum(runs),
                "mean_length": float(np.mean(runs)) if runs else 0.0,
            }
        )
    return pd.DataFrame(rows)


def dropdown_growth(dropdowns: pd.DataFrame) -> pd.DataFrame:
    """Do runs grow under ablation? Per kind: runs and mean length pooled, and the sentences in
    runs per trace against no ablation, paired over traces (random draws averaged per trace):
    mean difference and the Wilcoxon signed-rank p-value (NaN with no non-zero difference)."""
    baseline = dropdowns[dropdowns["kind"] == "baseline"].set_index("trace")["in_runs"]
    rows = []
    for kind, group in dropdowns.groupby("kind", sort=True):
        per_trace = group.groupby("trace")["in_runs"].mean()
        paired = pd.concat([per_trace, baseline], axis=1, keys=["ablated", "none"]).dropna()
        difference = paired["ablated"] - paired["none"]
        lengths = [int(x) for text in group["lengths"] for x in str(text).split() if x]
        p_value = (
            float(stats.wilcoxon(paired["ablated"], paired["none"]).pvalue)
            if kind != "baseline" and (difference != 0).any()
            else math.nan
        )
        rows.append(
            {
                "kind": kind,
                "n_conditions": group["condition"].nunique(),
                "n_traces": len(paired),
                "n_runs": len(lengths),
                "mean_run_length": float(np.mean(lengths)) if lengths else 0.0,
                "max_run_length": max(lengths, default=0),
                "in_runs_per_trace": float(per_trace.mean()),
                "in_runs_change_vs_baseline": float(difference.mean()) if len(paired) else math.nan,
                "wilcoxon_p": p_value,
            }
        )
    return pd.DataFrame(rows)
