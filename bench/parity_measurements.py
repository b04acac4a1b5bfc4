"""Maximum differences between anchorflow and the transcribed reference definitions
(tests/test_parity.py) on random inputs and, given a run's results, on its real vertical scores.
The numbers go into docs/PARITY.md.

    python bench/parity_measurements.py                                  # random inputs
    python bench/parity_measurements.py results/real-sample smollm2      # + a real run
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_parity import (  # noqa: E402
    random_matrices,
    reference_kurtosis,
    reference_split_half,
    reference_top_k,
    reference_vertical_scores,
)

from anchorflow.io import read_npz  # noqa: E402
from anchorflow.receivers import (  # noqa: E402
    head_kurtosis,
    mean_kurtosis,
    reliability_order,
    split_half_reliability,
    top_receiver_heads,
    vertical_scores,
)


def vertical_difference(matrices: np.ndarray, proximity_ignore: int = 4) -> float:
    ours = vertical_scores(matrices, proximity_ignore)
    worst = 0.0
    for layer in range(matrices.shape[0]):
        for head in range(matrices.shape[1]):
            expected = reference_vertical_scores(matrices[layer, head], proximity_ignore, False)
            both = np.isfinite(expected)
            assert (np.isfinite(ours[layer, head]) == both).all()
            worst = max(worst, float(np.abs(ours[layer, head][both] - expected[both]).max()))
    return worst


def statistics_differences(vertical: dict[str, np.ndarray]) -> dict[str, float | str]:
    """Kurtosis, top-20 and split-half r against the reference on per-trace vertical scores."""
    traces = reliability_order(list(vertical))
    ours = np.stack([head_kurtosis(vertical[trace]) for trace in traces])
    theirs = np.stack([reference_kurtosis(vertical[trace]) for trace in traces])
    finite = np.isfinite(ours)
    means = mean_kurtosis(ours)
    top = top_receiver_heads(means, 20, exclude_layer0=False)
    reference_top = reference_top_k(mean_kurtosis(theirs), 20)
    return {
        "kurtosis_max_abs": float(np.abs(ours[finite] - theirs[finite]).max()),
        "top20_equal_with_layer0_kept": bool(np.array_equal(top, reference_top)),
        "split_half_r_abs": abs(split_half_reliability(ours)["r"] - reference_split_half(ours)),
    }


def main() -> None:
    matrices = np.concatenate([random_matrices(seed) for seed in range(5)], axis=1)
    print(f"random: vertical scores max |diff| {vertical_difference(matrices):.3g}")
    rng = np.random.default_rng(0)
    vertical = {
        f"{problem}_{kind}": vertical_scores(random_matrices(int(rng.integers(1000))), 4)
        for problem in range(10)
        for kind in ("correct", "incorrect")
    }
    print("random:", statistics_differences(vertical))
    if len(sys.argv) == 3:
        results, model = Path(sys.argv[1]), sys.argv[2]
        real = {}
        worst = 0.0
        for path in sorted((results / "attention" / model).glob("*.npz")):
            arrays, _ = read_npz(path)
            real[path.stem] = arrays["vertical_scores"]
            if "sentence_attention" in arrays:  # saved as float16; scores come from float32
                matrices = arrays["sentence_attention"].astype(np.float64)
                worst = max(worst, vertical_difference(matrices))
        print(f"real ({len(real)} traces): vertical scores max |diff| {worst:.3g}")
        print("real:", statistics_differences(real))


if __name__ == "__main__":
    main()
