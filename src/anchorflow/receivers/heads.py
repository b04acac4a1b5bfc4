"""Receiver-head statistics per trace: vertical scores, kurtosis, top-k heads, receiver scores.

Definitions follow the Thought Anchors reference (method reference §5.3-§5.5). Everything is
vectorised over leading axes; no function emits RuntimeWarnings for empty or all-NaN slices.
"""

from __future__ import annotations

import numpy as np
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
