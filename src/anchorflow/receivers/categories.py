"""Receiver scores by sentence category, with paired tests between categories (Figure 5)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from anchorflow.receivers.reliability import trace_sort_key


def sentence_categories(label_chunks: list[dict], chunk_idx: list[int]) -> list[str]:
    """The category (first function tag) of each white-box sentence, via its ``chunk_idx``.

    ``label_chunks`` is the labels file's ``chunks`` list. A chunk with no tag is ``unknown``;
    a sentence whose chunk has no label is an error (indices are never shifted).
    """
    tags = {int(chunk["chunk_idx"]): list(chunk["function_tags"]) for chunk in label_chunks}
    missing = [index for index in chunk_idx if int(index) not in tags]
    if missing:
        raise ValueError(f"no label for chunk_idx {missing[:10]} ({len(missing)} sentences)")
    return [(tags[int(index)] or ["unknown"])[0] for index in chunk_idx]


def with_categories(scores: pd.DataFrame, labels: dict[str, list[dict]]) -> pd.DataFrame:
    """Add a ``category`` column to a :func:`receiver_score_table` frame.

    ``labels[trace]`` is the trace's labels-file ``chunks`` list; every trace of ``scores``
    needs one.
    """
    missing = sorted(set(scores["trace"]) - set(labels))
    if missing:
        raise ValueError(f"no labels file for traces {missing}")
    categories = pd.Series("", index=scores.index, dtype=object)
    for trace, rows in scores.groupby("trace", sort=False):
        categories[rows.index] = sentence_categories(labels[trace], rows["chunk_idx"].tolist())
    return scores.assign(category=categories)


MIN_COUNT_OF = ("scored", "all")


def category_means(
    scored: pd.DataFrame, categories: list[str], min_count: int = 2, min_count_of: str = "scored"
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Mean receiver-head score per (trace, category) cell (method reference §11.2).

    ``scored`` has columns ``trace, category, receiver_score``. The mean is over the cell's
    sentences with a finite score, in ``categories`` only. A cell is dropped when it has at most
    ``min_count`` sentences: counting those with a finite score (``min_count_of="scored"``,
    anchorflow's default) or every sentence of the cell (``"all"``, the reference's
    ``min_cnt``, which counts the last ``proximity_ignore`` sentences whose score is NaN too; a
    cell left with no finite score is then dropped as well). Returns columns ``trace, category,
    n_sentences, mean_receiver_score`` (categories in the given order; ``n_sentences`` is the
    count the rule used) and counts of what was left out.
    """
    if min_count_of not in MIN_COUNT_OF:
        raise ValueError(f"min_count_of must be one of {MIN_COUNT_OF}, not {min_count_of!r}")
    finite = np.isfinite(scored["receiver_score"].to_numpy(dtype=np.float64))
    shown = scored["category"].isin(categories).to_numpy()
    counted = scored[shown] if min_count_of == "all" else scored[finite & shown]
    cells = (
        counted.groupby(["trace", "category"], sort=False)["receiver_score"]
        .agg(n_sentences="size", mean_receiver_score="mean")
        .reset_index()
    )
    large = cells[(cells["n_sentences"] > min_count) & cells["mean_receiver_score"].notna()]
    sort_keys = [
        (categories.index(category), *trace_sort_key(trace))
        for trace, category in zip(large["trace"], large["category"], strict=True)
    ]
    large = large.iloc[sorted(range(len(large)), key=sort_keys.__getitem__)]
    counts = {
        "n_sentences_nan_score": int((~finite).sum()),
        "n_sentences_other_category": int((finite & ~shown).sum()),
        "n_cells_below_min_count": int(len(cells) - len(large)),
        "n_cells": int(len(large)),
    }
    return large.reset_index(drop=True), counts


def paired_ttests(means: pd.DataFrame, categories: list[str]) -> pd.DataFrame:
    """Paired t-tests of per-trace category means for every ordered pair of categories.

    ``scipy.stats.ttest_rel`` over the traces that have both categories. Columns
    ``category_a, category_b, n, mean_a, mean_b, t, p``; t and p are NaN when fewer than 2
    traces pair up or the differences are constant.
    """
    wide = means.pivot(index="trace", columns="category", values="mean_receiver_score")
    rows = []
    for first in categories:
        for second in categories:
            if first == second:
                continue
            pairs = (
                wide[[first, second]].dropna()
                if {first, second} <= set(wide.columns)
                else pd.DataFrame(columns=[first, second], dtype=np.float64)
            )
            a, b = pairs[first].to_numpy(), pairs[second].to_numpy()
            t = p = float("nan")
            if len(a) >= 2 and np.ptp(a - b) > 0:
                result = stats.ttest_rel(a, b)
                t, p = float(result.statistic), float(result.pvalue)
            rows.append(
                {
                    "category_a": first,
                    "category_b": second,
                    "n": len(a),
                    "mean_a": float(a.mean()) if len(a) else float("nan"),
                    "mean_b": float(b.mean()) if len(b) else float("nan"),
                    "t": t,
                    "p": p,
                }
            )
    return pd.DataFrame(rows)
