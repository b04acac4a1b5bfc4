"""Benchmark: vectorised receiver-head statistics vs the reference's per-head loops.

The naive path follows the reference (method reference §17.1): for every head, mask the matrix,
optionally rank each row with scipy, take ``np.nanmean`` column by column, then
``scipy.stats.kurtosis(nan_policy="omit")`` per head. The vectorised path is
``vertical_scores`` + ``head_kurtosis`` on the whole ``[layers, heads, n, n]`` array. Both run
on the same random matrices in the same process; the script checks they agree.

    python bench/bench_receivers.py [--layers 8] [--heads 40] [--sentences 150] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from scipy import stats

from anchorflow.receivers.heads import head_kurtosis, vertical_scores


def naive_statistics(
    matrices: np.ndarray, proximity_ignore: int, control_depth: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per-head reference loops: ``[layers, heads, n, n]`` -> vertical ``[layers, heads, n]``
    and kurtosis ``[layers, heads]``."""
    layers, heads, n, _ = matrices.shape
    rows, cols = np.indices((n, n))
    vertical = np.full((layers, heads, n), np.nan)
    kurtosis = np.full((layers, heads), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for layer in range(layers):
            for head in range(heads):
                matrix = matrices[layer, head].astype(np.float64)
                matrix[cols > rows] = np.nan
                matrix[rows - cols < proximity_ignore] = np.nan
                if control_depth:
                    for i in range(n):
                        valid = int(np.sum(~np.isnan(matrix[i])))
                        if valid:
                            matrix[i] = stats.rankdata(matrix[i], nan_policy="omit") / valid
                for j in range(n):
                    vertical[layer, head, j] = np.nanmean(matrix[j + proximity_ignore :, j])
                kurtosis[layer, head] = stats.kurtosis(
                    vertical[layer, head], fisher=True, bias=True, nan_policy="omit"
                )
    return vertical, kurtosis


def vectorised_statistics(
    matrices: np.ndarray, proximity_ignore: int, control_depth: bool
) -> tuple[np.ndarray, np.ndarray]:
    """anchorflow's vectorised path, same inputs and outputs as :func:`naive_statistics`."""
    vertical = vertical_scores(matrices, proximity_ignore, control_depth)
    return vertical, head_kurtosis(vertical)


def best_time(function, repeats: int, *args: object) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=40)
    parser.add_argument("--sentences", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    matrices = np.tril(rng.random((args.layers, args.heads, args.sentences, args.sentences)))
    print("| shape | control_depth | naive s | vectorised s | speed-up |")
    print("|---|---|---|---|---|")
    for control_depth in (False, True):
        naive_v, naive_k = naive_statistics(matrices, 4, control_depth)
        fast_v, fast_k = vectorised_statistics(matrices, 4, control_depth)
        np.testing.assert_allclose(fast_v, naive_v, rtol=1e-10)
        np.testing.assert_allclose(fast_k, naive_k, rtol=1e-8)
        inputs = (matrices, 4, control_depth)
        naive = best_time(naive_statistics, args.repeats, *inputs)
        fast = best_time(vectorised_statistics, args.repeats, *inputs)
        shape = f"{args.layers}x{args.heads}x{args.sentences}"
        print(f"| {shape} | {control_depth} | {naive:.3f} | {fast:.3f} | {naive / fast:.1f}x |")


if __name__ == "__main__":
    main()
