"""Receiver-head statistics: vertical scores, kurtosis, top-k heads, reliability.

Definitions follow the Thought Anchors reference (method reference §5.3-§5.6). Everything is
vectorised over leading axes; no function emits RuntimeWarnings for empty or all-NaN slices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean over ``axis`` ignoring NaNs; NaN where a slice has no finite value (no warning)."""
    valid = ~np.isnan(values)
    count = valid.sum(axis=axis)
    total = np.where(valid, values, 0.0).sum(axis=axis)
    out = np.full(count.shape, np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


def vertical_scores(
    matrices: np.ndarray, proximity_ignore: int = 4, control_depth: bool = False
) -> np.ndarray:
    """Vertical attention scores ``[..., n, n] -> [..., n]`` (method reference §5.3).

    ``matrices[..., i, j]`` is the mean attention from sentence ``i`` (query) to sentence ``j``
    (key). Entries with ``i - j < proximity_ignore`` (the future, the diagonal and the near band)
    are masked; with ``control_depth`` each row is replaced by its ranks among its unmasked,
    non-NaN entries divided by their count (values in (0, 1]). The score of column ``j`` is the
    NaN-mean of its unmasked entries, so the last ``proximity_ignore`` sentences get NaN.
    """
    if proximity_ignore < 0:
        raise ValueError(f"proximity_ignore must be >= 0, got {proximity_ignore}")
    matrices = np.asarray(matrices, dtype=np.float64)
    if matrices.ndim < 2 or matrices.shape[-1] != matrices.shape[-2]:
        raise ValueError(f"expected [..., n, n] matrices, got shape {matrices.shape}")
    n = matrices.shape[-1]
    rows, cols = np.indices((n, n))
    kept = rows - cols >= proximity_ignore
    masked = np.where(kept, matrices, np.nan)
    if control_depth:
        counts = (~np.isnan(masked)).sum(axis=-1, keepdims=True)
        ranks = stats.rankdata(masked, axis=-1, nan_policy="omit")
        masked = ranks / np.maximum(counts, 1)
    return _nanmean(masked, axis=-2)


def head_kurtosis(scores: np.ndarray) -> np.ndarray:
    """Excess kurtosis over the last axis, ``[..., n] -> [...]`` (method reference §5.4).

    Fisher (normal = 0), biased moment estimator ``m4 / m2**2 - 3`` with 1/N moments, NaNs
    omitted. A slice with fewer than 4 non-NaN values, or with zero variance, gives NaN (the
    zero-variance test is scipy's: ``m2 <= (resolution * mean)**2``).
    """
    scores = np.asarray(scores, dtype=np.float64)
    valid = ~np.isnan(scores)
    count = valid.sum(axis=-1)
    safe_count = np.maximum(count, 1)
    mean = np.where(valid, scores, 0.0).sum(axis=-1) / safe_count
    deviation = np.where(valid, scores - mean[..., None], 0.0)
    squared = deviation**2
    m2 = squared.sum(axis=-1) / safe_count
    m4 = (squared**2).sum(axis=-1) / safe_count
    resolution = np.finfo(np.float64).resolution
    defined = (count >= 4) & (m2 > (resolution * mean) ** 2)
    out = np.full(count.shape, np.nan)
    np.divide(m4, m2**2, out=out, where=defined)
    return out - 3.0


def mean_kurtosis(kurtosis: np.ndarray) -> np.ndarray:
    """Unweighted mean over traces, ``[traces, layers, heads] -> [layers, heads]``.

    A plain mean, as in the reference: a head that is NaN in any trace is NaN.
    """
    kurtosis = np.asarray(kurtosis, dtype=np.float64)
    if kurtosis.ndim != 3 or kurtosis.shape[0] == 0:
        raise ValueError(f"expected [traces, layers, heads] with >= 1 trace, got {kurtosis.shape}")
    return kurtosis.mean(axis=0)


def rank_heads(head_values: np.ndarray, exclude_layer0: bool = True) -> np.ndarray:
    """All heads with a finite value, best first: ``[layers, heads] -> int [m, 2]`` (layer, head).

    Sorted by value descending, ties broken by (layer, head) ascending so the order is stable.
    """
    head_values = np.asarray(head_values, dtype=np.float64)
    if head_values.ndim != 2:
        raise ValueError(f"expected [layers, heads], got shape {head_values.shape}")
    layers, heads = np.indices(head_values.shape)
    eligible = np.isfinite(head_values)
    if exclude_layer0:
        eligible &= layers != 0
    values, layer_ids, head_ids = head_values[eligible], layers[eligible], heads[eligible]
    order = np.lexsort((head_ids, layer_ids, -values))
    return np.stack([layer_ids[order], head_ids[order]], axis=1)


def top_receiver_heads(
    head_values: np.ndarray, top_k: int = 20, exclude_layer0: bool = True
) -> np.ndarray:
    """The ``top_k`` heads of highest mean kurtosis, ``[layers, heads] -> int [k, 2]``.

    NaN heads are never selected (method reference §5.5); with fewer eligible heads than
    ``top_k`` all eligible heads are returned.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    return rank_heads(head_values, exclude_layer0)[:top_k]


def receiver_scores(vertical: np.ndarray, heads: np.ndarray) -> np.ndarray:
    """Receiver-head score per sentence: ``[layers, heads, n]`` and ``[k, 2] -> [n]``.

    The plain mean of the selected heads' vertical scores, so a sentence is NaN where any
    selected head is NaN (the last ``proximity_ignore`` sentences).
    """
    heads = np.asarray(heads, dtype=np.int64).reshape(-1, 2)
    if heads.shape[0] == 0:
        raise ValueError("no receiver heads given")
    return np.asarray(vertical, dtype=np.float64)[heads[:, 0], heads[:, 1]].mean(axis=0)


def trace_sort_key(trace: str) -> tuple[int, int]:
    """Order of traces for the split halves: correct before incorrect, then problem number."""
    problem, correctness = trace.split("_")
    if correctness not in ("correct", "incorrect"):
        raise ValueError(f"bad trace id {trace!r}; expected '{{problem}}_{{correct|incorrect}}'")
    return (0 if correctness == "correct" else 1, int(problem))


def reliability_order(traces: list[str]) -> list[str]:
    """Traces in the documented split-half order (:func:`trace_sort_key`)."""
    return sorted(traces, key=trace_sort_key)


def split_half_reliability(kurtosis: np.ndarray) -> dict[str, float | int]:
    """Split-half reliability of mean kurtosis (method reference §5.6).

    ``kurtosis`` is ``[traces, layers, heads]`` already in :func:`reliability_order`. Traces
    0, 2, 4, ... form the first half and 1, 3, 5, ... the second; each head of layers >= 1
    gets its mean kurtosis in both halves and Pearson r is taken across heads. Heads that are
    NaN in either half are left out and counted (``n_heads_nan``). r and p are NaN when fewer
    than 3 heads remain or either half is constant.
    """
    kurtosis = np.asarray(kurtosis, dtype=np.float64)
    if kurtosis.ndim != 3 or kurtosis.shape[0] < 2:
        raise ValueError(f"need [traces >= 2, layers, heads], got shape {kurtosis.shape}")
    first = kurtosis[0::2, 1:].mean(axis=0).ravel()
    second = kurtosis[1::2, 1:].mean(axis=0).ravel()
    finite = np.isfinite(first) & np.isfinite(second)
    x, y = first[finite], second[finite]
    r = p = float("nan")
    if x.size >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
        result = stats.pearsonr(x, y)
        r, p = float(result.statistic), float(result.pvalue)
    return {
        "r": r,
        "p": p,
        "n_heads": int(x.size),
        "n_heads_nan": int((~finite).sum()),
        "n_first": int(kurtosis[0::2].shape[0]),
        "n_second": int(kurtosis[1::2].shape[0]),
    }


def split_half_means(kurtosis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean kurtosis of the two halves, ``[traces, layers, heads] -> 2 x [layers, heads]``."""
    kurtosis = np.asarray(kurtosis, dtype=np.float64)
    return kurtosis[0::2].mean(axis=0), kurtosis[1::2].mean(axis=0)


def jaccard(first: np.ndarray, second: np.ndarray) -> float:
    """Jaccard similarity of two sets of (layer, head) rows ``[k, 2]``."""
    a = {tuple(row) for row in np.asarray(first).tolist()}
    b = {tuple(row) for row in np.asarray(second).tolist()}
    union = a | b
    return len(a & b) / len(union) if union else float("nan")


def bootstrap_top_k_jaccard(
    kurtosis: np.ndarray, top_k: int, exclude_layer0: bool, n_bootstrap: int, seed: int
) -> np.ndarray:
    """Stability of the top-k set: Jaccard of each bootstrap top-k set with the full-data one.

    Traces are resampled with replacement (``numpy.random.default_rng(seed)``); each resample's
    mean kurtosis gives a top-k set. Returns ``[n_bootstrap]`` Jaccard similarities.
    """
    kurtosis = np.asarray(kurtosis, dtype=np.float64)
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    reference = top_receiver_heads(mean_kurtosis(kurtosis), top_k, exclude_layer0)
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, kurtosis.shape[0], size=(n_bootstrap, kurtosis.shape[0]))
    means = kurtosis[samples].mean(axis=1)
    return np.array(
        [jaccard(top_receiver_heads(m, top_k, exclude_layer0), reference) for m in means]
    )


@dataclass(frozen=True)
class ReceiverAnalysis:
    """Receiver-head statistics of one model over its traces (in :func:`reliability_order`).

    ``kurtosis`` is ``[traces, layers, heads]``, ``mean_kurtosis`` ``[layers, heads]``,
    ``heads`` int ``[k, 2]`` (layer, head) best first, ``jaccard`` ``[n_bootstrap]``.
    """

    traces: list[str]
    kurtosis: np.ndarray
    mean_kurtosis: np.ndarray
    heads: np.ndarray
    reliability: dict[str, float | int]
    jaccard: np.ndarray


def analyse_receivers(
    vertical: dict[str, np.ndarray],
    top_k: int = 20,
    exclude_layer0: bool = True,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> ReceiverAnalysis:
    """Kurtosis, top-k heads, split-half reliability and bootstrap stability.

    ``vertical`` maps each trace id to its vertical scores ``[layers, heads, n_sentences]``;
    every trace must have the same ``[layers, heads]``.
    """
    if len(vertical) < 2:
        raise ValueError(f"receiver-head analysis needs >= 2 traces, got {len(vertical)}")
    traces = reliability_order(list(vertical))
    shapes = {trace: np.shape(vertical[trace])[:2] for trace in traces}
    if len(set(shapes.values())) != 1 or any(np.ndim(vertical[t]) != 3 for t in traces):
        raise ValueError(f"vertical scores must all be [layers, heads, n]; got shapes {shapes}")
    kurtosis = np.stack([head_kurtosis(vertical[trace]) for trace in traces])
    means = mean_kurtosis(kurtosis)
    return ReceiverAnalysis(
        traces=traces,
        kurtosis=kurtosis,
        mean_kurtosis=means,
        heads=top_receiver_heads(means, top_k, exclude_layer0),
        reliability=split_half_reliability(kurtosis),
        jaccard=bootstrap_top_k_jaccard(kurtosis, top_k, exclude_layer0, n_bootstrap, seed),
    )


def kurtosis_table(analysis: ReceiverAnalysis) -> pd.DataFrame:
    """Per-trace kurtosis, long format: columns ``layer, head, trace, kurtosis``."""
    n_traces, layers, heads = analysis.kurtosis.shape
    layer, head = np.indices((layers, heads))
    return pd.DataFrame(
        {
            "layer": np.tile(layer.ravel(), n_traces),
            "head": np.tile(head.ravel(), n_traces),
            "trace": np.repeat(analysis.traces, layers * heads),
            "kurtosis": analysis.kurtosis.reshape(-1),
        }
    )


def kurtosis_array(table: pd.DataFrame, traces: list[str]) -> np.ndarray:
    """Inverse of :func:`kurtosis_table`: ``[len(traces), layers, heads]`` in the given order."""
    layers, heads = int(table["layer"].max()) + 1, int(table["head"].max()) + 1
    out = np.full((len(traces), layers, heads), np.nan)
    position = {trace: index for index, trace in enumerate(traces)}
    missing = sorted(set(table["trace"]) ^ set(traces))
    if missing:
        raise ValueError(f"kurtosis table and trace list differ in traces {missing[:10]}")
    rows = table["trace"].map(position).to_numpy()
    out[rows, table["layer"].to_numpy(), table["head"].to_numpy()] = table["kurtosis"]
    return out


def receiver_heads_table(analysis: ReceiverAnalysis) -> pd.DataFrame:
    """The top-k heads: columns ``rank, layer, head, mean_kurtosis`` (rank 1 = highest)."""
    layer, head = analysis.heads[:, 0], analysis.heads[:, 1]
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(layer) + 1),
            "layer": layer,
            "head": head,
            "mean_kurtosis": analysis.mean_kurtosis[layer, head],
        }
    )


def reliability_table(
    analysis: ReceiverAnalysis, top_k: int, exclude_layer0: bool, seed: int
) -> pd.DataFrame:
    """One row: split-half r, p and head counts, bootstrap Jaccard summary, the trace order."""
    jaccard_values = analysis.jaccard
    row = dict(analysis.reliability)
    row.update(
        {
            "top_k": top_k,
            "exclude_layer0": exclude_layer0,
            "bootstrap_jaccard_mean": float(jaccard_values.mean()),
            "bootstrap_jaccard_sd": float(jaccard_values.std(ddof=1))
            if jaccard_values.size > 1
            else float("nan"),
            "bootstrap_jaccard_q025": float(np.quantile(jaccard_values, 0.025)),
            "bootstrap_jaccard_q975": float(np.quantile(jaccard_values, 0.975)),
            "n_bootstrap": int(jaccard_values.size),
            "seed": seed,
            "trace_order": ",".join(analysis.traces),
        }
    )
    return pd.DataFrame([row])


def receiver_score_table(
    analysis: ReceiverAnalysis,
    vertical: dict[str, np.ndarray],
    chunk_indices: dict[str, list[int]],
) -> pd.DataFrame:
    """Per-sentence receiver-head scores: columns ``trace, sentence, chunk_idx, receiver_score``.

    ``chunk_indices[trace]`` is the sentences file's ``chunk_idx`` list; its length must equal
    the trace's number of sentences.
    """
    frames = []
    for trace in analysis.traces:
        scores = receiver_scores(vertical[trace], analysis.heads)
        chunks = list(chunk_indices[trace])
        if len(chunks) != scores.size:
            raise ValueError(
                f"{trace}: {scores.size} sentences in the vertical scores but "
                f"{len(chunks)} chunk_idx entries in the sentences file"
            )
        frames.append(
            pd.DataFrame(
                {
                    "trace": trace,
                    "sentence": np.arange(scores.size),
                    "chunk_idx": np.asarray(chunks, dtype=np.int64),
                    "receiver_score": scores,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


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


def markdown_table(frame: pd.DataFrame, float_format: str = "{:.4g}") -> str:
    """A GitHub-flavoured Markdown table of ``frame`` (no index)."""

    def cell(value: object) -> str:
        return float_format.format(value) if isinstance(value, float) else str(value)

    lines = [
        "| " + " | ".join(frame.columns) + " |",
        "|" + "---|" * len(frame.columns),
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines) + "\n"


def check_vertical_parameters(metadata: dict, expected: dict, source: str) -> None:
    """Fail if an attention file's metadata records vertical-score parameters other than
    ``expected`` (looked up at the top level and under ``params``)."""
    recorded = {**metadata.get("params", {}), **metadata}
    for key, value in expected.items():
        if key in recorded and recorded[key] != value:
            raise ValueError(
                f"{source}: vertical scores were computed with {key}={recorded[key]!r}, "
                f"but receivers.{key} is {value!r}; rerun the attention rule"
            )
