"""Maximum differences between anchorflow and the transcribed reference definitions
(tests/test_parity.py) on random inputs and, given a run's results, on its real vertical scores.
The numbers go into docs/PARITY.md.

    python bench/parity_measurements.py                                  # random inputs
    python bench/parity_measurements.py results/real-sample smollm2      # + a real run
    python bench/parity_measurements.py results/real-sample-parity smollm2 --parity
        # + checks that a run under config/paper-parity.yaml made the reference's choices
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_parity import (  # noqa: E402
    random_matrices,
    reference_figure5_cells,
    reference_kurtosis,
    reference_split_half,
    reference_top_k,
    reference_vertical_scores,
)

from anchorflow.data.rollouts import read_records
from anchorflow.io import read_json, read_npz, read_tsv  # noqa: E402
from anchorflow.models.loading import load_tokenizer
from anchorflow.receivers.analysis import kurtosis_array
from anchorflow.receivers.categories import category_means, with_categories
from anchorflow.receivers.heads import (
    head_kurtosis,
    mean_kurtosis,
    top_receiver_heads,
    vertical_scores,
)
from anchorflow.receivers.reliability import reliability_order, split_half_reliability


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
    theirs = np.stack([reference_kurtosis(vertical[trace].astype(np.float64)) for trace in traces])
    finite = np.isfinite(ours)
    means = mean_kurtosis(ours)
    top = top_receiver_heads(means, 20, exclude_layer0=False)
    reference_top = reference_top_k(mean_kurtosis(theirs), 20)
    return {
        "kurtosis_max_abs": float(np.abs(ours[finite] - theirs[finite]).max()),
        "top20_equal_with_layer0_kept": bool(np.array_equal(top, reference_top)),
        "split_half_r_abs": abs(split_half_reliability(ours)["r"] - reference_split_half(ours)),
    }


def parity_run_checks(results: Path, model: str) -> dict[str, object]:
    """Whether a run under ``config/paper-parity.yaml`` made the reference's choices: token
    spans by ``len(tokenize(text[:c]))``, the reference's top-k from its mean kurtosis, and the
    reference's Figure 5 cells."""
    token_files = sorted((results / "tokens" / model).glob("*.json"))
    spec = read_json(token_files[0])["params"]["model"]
    tokenizer = load_tokenizer(spec)
    records = {r["trace"]: r for r in read_records(str(results / "rollouts" / "records.jsonl"))}
    spans_equal = 0
    for path in token_files:
        tokens = read_json(path)
        sentences = read_json(results / "sentences" / spec["rollouts"] / path.name)
        text = records[path.stem]["full_cot"]
        reference = [
            [
                len(tokenizer(text[:a])["input_ids"]) if a else 0,
                len(tokenizer(text[:b])["input_ids"]),
            ]
            for a, b in sentences["char_spans"]
        ]
        spans_equal += tokens["rule"] == "prefix" and tokens["token_spans"] == reference
    kurtosis_table = read_tsv(results / "receivers" / model / "kurtosis.tsv")
    traces = sorted(set(kurtosis_table["trace"]))
    means = mean_kurtosis(kurtosis_array(kurtosis_table, traces))
    heads = read_tsv(results / "receivers" / model / "receiver_heads.tsv")[["layer", "head"]]
    top_equal = bool(np.array_equal(heads.to_numpy(), reference_top_k(means, len(heads))))
    scores = read_tsv(results / "receivers" / model / "receiver_scores.tsv")
    labels = {
        trace: read_json(results / "labels" / spec["rollouts"] / f"{trace}.json")["chunks"]
        for trace in set(scores["trace"])
    }
    scored = with_categories(scores, labels)
    categories = sorted(
        set(read_tsv(results / "figures" / model / "figure5_ttests.tsv")["category_a"])
    )
    ours, _ = category_means(scored, categories, 2, "all")
    expected = reference_figure5_cells(scored, categories, 2)
    ours_series = ours.set_index(["trace", "category"])["mean_receiver_score"].sort_index()
    cells_equal = bool(np.allclose(ours_series.to_numpy(), expected.to_numpy(), rtol=1e-12))
    cells_equal &= list(ours_series.index) == list(expected.index)
    return {
        "token_files_equal_to_prefix_definition": f"{spans_equal} of {len(token_files)}",
        "top_k_equal_to_get_top_k_receiver_heads": top_equal,
        "figure5_cells_equal_to_reference": cells_equal,
        "figure5_cells": len(ours_series),
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
    if len(sys.argv) == 4 and sys.argv[3] == "--parity":
        print("parity run:", parity_run_checks(Path(sys.argv[1]), sys.argv[2]))
    elif len(sys.argv) == 3:
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
