"""How stable the receiver heads are across traces: split-half reliability of the kurtosis and
bootstrap Jaccard overlap of the top-k sets (method reference §5.6)."""

from __future__ import annotations

import numpy as np
from scipy import stats

from anchorflow.receivers.heads import mean_kurtosis, top_receiver_heads


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
