"""Counterfactual importance under ablation: changes, top changes, dropdown runs, similarity
summaries and the model's own embedding, each against a direct computation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from anchorflow.interventions.counterfactual import model_embedder, similarity_suffixes
from anchorflow.interventions.counterfactual_tables import (
    change_by_category,
    dropdown_growth,
    dropdown_runs,
    dropdown_table,
    importance_changes,
    similarity_by_category,
    top_changes,
)
from anchorflow.models.tiny import random_causal_lm, word_level_tokenizer

BASELINE = [0.5, 0.0, 0.001, 0.0, 0.9, 0.0]
RECEIVERS = [1.5, 0.0, 0.0, 0.0, 0.0, 0.0]
DRAWS = [[0.5, 0.0, 0.001, 0.0, 0.8, 0.0], [0.7, 0.0, 0.001, 0.0, 0.9, 0.1]]
CATEGORIES = ["plan_generation", "active_computation"] * 3


def frame(traces=("1_correct",)) -> pd.DataFrame:
    rows = []
    conditions = [("baseline", "baseline", BASELINE), ("top5", "receivers", RECEIVERS)]
    conditions += [(f"random_draw{d}", "random", values) for d, values in enumerate(DRAWS)]
    for trace in traces:
        for condition, kind, values in conditions:
            for sentence, value in enumerate(values):
                rows.append(
                    {
                        "condition": condition,
                        "kind": kind,
                        "trace": trace,
                        "sentence": sentence,
                        "category": CATEGORIES[sentence],
                        "counterfactual_importance_kl": value,
                        "similarity_mean": 0.5 + sentence / 10,
                        "similarity_sd": 0.1,
                    }
                )
    return pd.DataFrame(rows)


def test_changes_are_against_the_same_sentence_without_ablation():
    changes = importance_changes(frame(), "counterfactual_importance_kl")
    receivers = changes[changes["kind"] == "receivers"].set_index("sentence")
    assert receivers["change"].tolist() == pytest.approx(np.subtract(RECEIVERS, BASELINE).tolist())
    assert len(changes) == 6 * 3  # receivers and two draws
    by_category = change_by_category(changes).set_index(["kind", "category"])
    plan = [RECEIVERS[i] - BASELINE[i] for i in (0, 2, 4)]
    assert by_category.loc[("receivers", "plan_generation"), "mean_change"] == pytest.approx(
        np.mean(plan)
    )
    assert by_category.loc[("receivers", "plan_generation"), "mean_abs_change"] == pytest.approx(
        np.mean(np.abs(plan))
    )


def test_top_changes_rank_increases_and_decreases_per_kind():
    top = top_changes(importance_changes(frame(), "counterfactual_importance_kl"), k=2)
    receivers = top[top["kind"] == "receivers"]
    increase = receivers[receivers["direction"] == "increase"]
    decrease = receivers[receivers["direction"] == "decrease"]
    assert increase["sentence"].tolist() == [0]  # the only increase: +1.0
    assert decrease["sentence"].tolist() == [4, 2] and decrease["rank"].tolist() == [1, 2]
    random = top[(top["kind"] == "random") & (top["direction"] == "increase")]
    assert random.iloc[0]["sentence"] == 0 and random.iloc[0]["change"] == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("values", "runs"),
    [
        ([0.0, 0.0, 0.0], [3]),
        ([0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0], [4]),
        ([0.0, 0.0], []),  # shorter than min_length
        ([0.0, 0.005, -0.009, 0.02, 0.0, 0.0, 0.0], [3, 3]),  # |importance| < eps
        ([0.0, 0.0, math.nan, 0.0, 0.0, 0.0], [3]),  # NaN ends a run
    ],
)
def test_dropdown_runs_are_maximal_runs_of_near_zero_importance(values, runs):
    assert dropdown_runs(values, min_length=3, epsilon=0.01) == runs


def test_dropdown_growth_is_paired_over_traces():
    table = dropdown_table(
        frame(("1_correct", "2_correct")), "counterfactual_importance_kl", 3, 0.01
    )
    receivers = table[table["kind"] == "receivers"].iloc[0]
    assert receivers["lengths"] == "5" and receivers["in_runs"] == 5
    baseline = table[table["kind"] == "baseline"].iloc[0]
    assert baseline["lengths"] == "3" and baseline["n_runs"] == 1
    growth = dropdown_growth(table).set_index("kind")
    assert growth.loc["receivers", "in_runs_change_vs_baseline"] == 2.0
    assert growth.loc["receivers", "n_traces"] == 2
    assert growth.loc["random", "in_runs_change_vs_baseline"] == pytest.approx(
        np.mean([3, 3]) - 3  # draw 0: one run of 3 (1-3); draw 1: one run of 3 (1-3)
    )
    assert math.isnan(growth.loc["baseline", "wilcoxon_p"])


def test_similarity_summaries_by_category():
    per_sentence = frame()
    per_sentence["counterfactual_importance_kl_model_embeddings"] = 1.0
    per_sentence["similarity_mean_model_embeddings"] = 0.9
    per_sentence["similarity_sd_model_embeddings"] = 0.0
    table = similarity_by_category(
        per_sentence, similarity_suffixes(["sentence_model", "model_embeddings"])
    )
    assert set(table["similarity"]) == {"sentence_model", "model_embeddings"}
    row = table[
        (table["similarity"] == "sentence_model")
        & (table["kind"] == "baseline")
        & (table["category"] == "plan_generation")
    ].iloc[0]
    assert row["importance_mean"] == pytest.approx(np.mean([BASELINE[i] for i in (0, 2, 4)]))
    assert row["similarity_mean"] == pytest.approx(np.mean([0.5, 0.7, 0.9]))


def test_model_embeddings_are_the_mean_input_embedding_of_the_tokens():
    words = ["<pad>", "<eos>", "<bos>", "<unk>", "two", "plus", "three"]
    model = random_causal_lm("llama", vocab=len(words))
    tokenizer = word_level_tokenizer(words)
    embed = model_embedder(model, tokenizer)
    vectors = embed(["two plus three", "two", ""])
    table = model.get_input_embeddings().weight.detach().double()
    assert np.allclose(vectors[0], table[[4, 5, 6]].mean(0).numpy())
    assert np.allclose(vectors[1], table[4].numpy()) and not vectors[2].any()


def test_importance_table_reads_every_similarity_in_one_pass():
    """Two similarities side by side: the first's columns unsuffixed, the second's suffixed;
    a similarity run alone is named for itself (not for the sentence model)."""
    from anchorflow.interventions.counterfactual import importance_table

    records = {"1_correct": {"chunks": ["First step here.", "Second step here."], "labels": []}}
    rows = [
        {"condition": "baseline", "trace": "1_correct", "prefix": k, "gt_answer": "4"}
        | {"text": f"Some other start. So \\boxed{{{answer}}}"}
        for k in (0, 1, 2)
        for answer in (3, 4)
    ]
    same = (lambda texts: np.ones((len(texts), 2)), 0.8)  # every pair similar (cosine 1)
    apart = (lambda texts: np.eye(len(texts), 64)[: len(texts)], 0.8)  # every pair dissimilar
    both = importance_table(
        rows, records, {"sentence_model": same, "model_embeddings": apart}, None, "last"
    )
    assert (both["n_dissimilar"] == 0).all() and (both["n_dissimilar_model_embeddings"] == 2).all()
    assert both["similarity_mean"].tolist() == pytest.approx([1.0, 1.0])
    alone = importance_table(rows, records, {"model_embeddings": apart}, None, "last")
    assert (alone["n_dissimilar"] == 2).all()
    assert similarity_suffixes(["model_embeddings"]) == {"model_embeddings": ""}
