"""Intervention tables: repetition loops, receiver-vs-random spread and tests, failure modes,
difficulty strata and the counterfactual controls, each against a direct computation."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from anchorflow.interventions.scoring import failure_fields, repetition_loop, score_rows
from anchorflow.interventions.tables import (
    answer_change_rate,
    counterfactual_controls,
    failure_mode_table,
    paired_test,
    problem_strata,
    receiver_vs_random,
    strata_table,
)
from anchorflow.plots.interventions import ablation_figure, amplification_figure, patching_figure


def naive_loop(text: str, min_repeats: int, max_period: int, min_chars: int) -> bool:
    """The definition, literally: some unit u (|u| <= max_period) such that u repeated r >=
    min_repeats times, followed by a proper prefix of u, occurs with length >= min_chars."""
    for period in range(1, max_period + 1):
        for start in range(len(text)):
            unit = text[start : start + period]
            if len(unit) < period:
                break
            end = start + period
            while end < len(text) and text[end] == text[end - period]:
                end += 1
            span = end - start
            if span >= max(min_repeats * period, min_chars):
                return True
    return False


def test_repetition_loop_matches_the_definition():
    rng = random.Random(0)
    for _ in range(400):
        alphabet = rng.choice(["ab", "abc", "7", "x y"])
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        settings = (rng.randint(2, 4), rng.randint(1, 6), rng.randint(1, 20))
        assert repetition_loop(text, *settings) == naive_loop(text, *settings), (text, settings)
    assert repetition_loop("The answer is " + "7" * 16, 3, 8, 12)
    assert repetition_loop("so so so so so so so so ", 3, 8, 12)
    assert not repetition_loop("Wait, 2 + 2 = 4, so \\boxed{4}.", 3, 8, 12)
    assert not repetition_loop("aaa", 3, 8, 12)  # repeated, but shorter than min_chars


SETTINGS = {
    "min_repeats": 3,
    "max_period": 8,
    "min_chars": 12,
    "sentence_repeats": 3,
    "backtrack_repeats": 3,
}


def test_failure_fields_and_score_rows():
    settings = SETTINGS
    assert failure_fields("7" * 16, False, None, settings) == {
        "repetition_loop": True,
        "sentence_loop": False,
        "backtracking_loop": False,
        "arithmetic_statements": 0,
        "arithmetic_unparsed": 0,
        "arithmetic_wrong": 0,
        "arithmetic_error_share": pytest.approx(math.nan, nan_ok=True),
        "unfinished": True,
        "no_box": True,
    }
    looping = "Wait, is that right? " * 4 + "So 2 + 2 = 5."
    fields = failure_fields(looping, True, "5", settings)
    assert fields["sentence_loop"] and fields["backtracking_loop"]
    assert fields["arithmetic_wrong"] == 1 and fields["arithmetic_error_share"] == 1.0
    rows = [{"text": "</think> \\boxed{7}", "gt_answer": "7", "stopped": True, "n_tokens": 9}]
    scored = score_rows(rows, "last", settings)[0]
    assert scored["correct"] and not scored["no_box"] and not scored["repetition_loop"]
    assert "text" not in scored
    assert "repetition_loop" not in score_rows(rows, "last")[0]


CONDITIONS = {
    "baseline": {"kind": "baseline", "heads": []},
    "top1_zero": {"kind": "receivers", "heads": [[2, 1]], "k": 1},
    **{
        f"random1_zero_draw{d}": {
            "kind": "random",
            "heads": [[2, h]],
            "k": 1,
            "draw": d,
            "draw_seed": 10 + d,
        }
        for d, h in enumerate([0, 2, 3, 0])
    },
}


def scored_frame(accuracy: dict[str, list[float]], samples: int = 4) -> pd.DataFrame:
    """Rows whose per-problem share of accurate generations is ``accuracy[condition][p]``."""
    rows = []
    for condition, per_problem in accuracy.items():
        for problem, share in enumerate(per_problem):
            for sample in range(samples):
                correct = sample < round(share * samples)
                rows.append(
                    {
                        "condition": condition,
                        "problem": problem,
                        "item_id": f"{problem}/{sample}",
                        "correct": correct,
                        "finished": True,
                        "stopped": True,
                        "answer": "7" if correct else "0",
                        "n_tokens": 9 if correct else 16,
                        "level": f"Level {1 + problem % 2}",
                        "repetition_loop": not correct,
                        "sentence_loop": not correct and sample == 0,
                        "backtracking_loop": False,
                        "arithmetic_statements": 2,
                        "arithmetic_unparsed": 1 if correct else 0,
                        "arithmetic_wrong": 0 if correct else 1,
                        "unfinished": False,
                        "no_box": False,
                    }
                )
    return pd.DataFrame(rows)


ACCURACY = {
    "baseline": [1.0, 1.0, 0.75, 1.0, 0.5],
    "top1_zero": [0.0, 0.25, 0.0, 0.0, 0.25],
    "random1_zero_draw0": [1.0, 1.0, 0.75, 1.0, 0.5],
    "random1_zero_draw1": [1.0, 0.75, 0.75, 1.0, 0.5],
    "random1_zero_draw2": [0.75, 1.0, 0.75, 1.0, 0.25],
    "random1_zero_draw3": [1.0, 1.0, 0.5, 1.0, 0.5],
}


def test_receiver_vs_random_against_a_direct_computation():
    scored = scored_frame(ACCURACY)
    summary, draws = receiver_vs_random(scored, CONDITIONS, match_on=["k"])
    assert list(summary["condition"]) == ["baseline", "top1_zero"]
    base, row = summary.iloc[0], summary.iloc[1]
    assert base["k"] == 0 and base["receiver_accuracy"] == pytest.approx(
        np.mean(ACCURACY["baseline"])
    )
    per_draw = [np.mean(ACCURACY[f"random1_zero_draw{d}"]) for d in range(4)]
    assert row["random_mean"] == pytest.approx(np.mean(per_draw))
    assert row["random_q025"] == pytest.approx(np.quantile(per_draw, 0.025))
    assert row["random_q975"] == pytest.approx(np.quantile(per_draw, 0.975))
    assert row["n_draws"] == 4 and row["n_problems"] == 5 and row["heads"] == "L2H1"
    random_by_problem = np.mean([ACCURACY[f"random1_zero_draw{d}"] for d in range(4)], axis=0)
    differences = np.array(ACCURACY["top1_zero"]) - random_by_problem
    expected = stats.wilcoxon(differences)
    assert row["p_value"] == pytest.approx(expected.pvalue)
    assert row["mean_difference"] == pytest.approx(differences.mean())
    assert row["receiver_ci_low"] < row["receiver_accuracy"] < row["receiver_ci_high"]
    assert list(draws["heads"]) == ["L2H0", "L2H2", "L2H3", "L2H0"]
    assert list(draws["draw_seed"]) == [10, 11, 12, 13]


def test_receiver_vs_random_refuses_a_condition_without_rows():
    scored = scored_frame({key: ACCURACY[key] for key in list(ACCURACY)[:-1]})
    with pytest.raises(ValueError, match="random1_zero_draw3"):
        receiver_vs_random(scored, CONDITIONS, match_on=["k"])


def test_paired_test_edge_cases():
    same = pd.Series([0.5, 0.5], index=[1, 2])
    assert paired_test(same, same)["p_value"] == 1.0
    assert math.isnan(paired_test(same, pd.Series(dtype=float))["p_value"])


def test_failure_modes_pool_the_random_draws():
    scored = scored_frame(ACCURACY)
    table = failure_mode_table(scored, CONDITIONS).set_index("kind")
    assert table.loc["random", "n_conditions"] == 4 and table.loc["random", "n"] == 4 * 20
    wrong = 1 - np.mean([np.mean(ACCURACY[f"random1_zero_draw{d}"]) for d in range(4)])
    assert table.loc["random", "repetition_loop_rate"] == pytest.approx(wrong)
    assert table.loc["receivers", "mean_tokens"] == pytest.approx(
        9 * np.mean(ACCURACY["top1_zero"]) + 16 * (1 - np.mean(ACCURACY["top1_zero"]))
    )
    # Arithmetic pooled over the family: correct rows 1 of 2 unparsed and none wrong, wrong
    # rows both parsed and one wrong.
    random = scored[scored["condition"].str.startswith("random")]
    right = random["correct"].mean()
    assert table.loc["random", "arithmetic_per_generation"] == 2.0
    assert table.loc["random", "arithmetic_unparsed_share"] == pytest.approx(right / 2)
    parsed = right * 1 + (1 - right) * 2
    assert table.loc["random", "arithmetic_error_share"] == pytest.approx((1 - right) / parsed)
    assert table.loc["random", "arithmetic_error_generation_rate"] == pytest.approx(1 - right)
    sentence = (~random["correct"] & (random["item_id"].str.endswith("/0"))).mean()
    assert table.loc["random", "sentence_loop_rate"] == pytest.approx(sentence)


def test_strata_by_level_and_by_baseline_tiers():
    scored = scored_frame(ACCURACY)
    table = strata_table(scored, CONDITIONS, tiers=3)
    assert set(table["stratum"]) == {"Level 1", "Level 2"}
    level1 = table[(table["stratum"] == "Level 1") & (table["kind"] == "receivers")].iloc[0]
    assert level1["n_problems"] == 3  # problems 0, 2, 4
    assert level1["accuracy"] == pytest.approx(np.mean([0.0, 0.0, 0.25]))
    scored.loc[scored["problem"] == 3, "level"] = ""
    strata, rule = problem_strata(scored, tiers=2)
    assert rule == "baseline_accuracy_tiers"
    # Baseline accuracy 0.5 (p4), 0.75 (p2), 1 (p0, p1, p3): the lower tier holds p4, p2, p0.
    assert strata == {4: "tier 1", 2: "tier 1", 0: "tier 1", 1: "tier 2", 3: "tier 2"}


def test_answer_change_rate_pairs_items():
    scored = scored_frame({"baseline": [1.0, 0.5], "top1_zero": [0.5, 0.5]})
    assert answer_change_rate(scored, "top1_zero") == pytest.approx(2 / 8)
    assert answer_change_rate(scored, "baseline") == 0.0


def test_counterfactual_controls():
    rows = []
    values = {"baseline": [0.1, 2.0, 0.0], "top1_zero": [0.0, 0.0, 0.0]}
    values |= {f"random1_zero_draw{d}": [0.1, 2.0 - 0.1 * d, 0.0] for d in range(3)}
    for condition, per_sentence in values.items():
        kind = CONDITIONS.get(condition, {"kind": "random"})["kind"]
        rows += [
            {
                "condition": condition,
                "kind": kind,
                "trace": "7_correct",
                "sentence": k,
                "counterfactual_importance_kl": v,
            }
            for k, v in enumerate(per_sentence)
        ]
    table = counterfactual_controls(pd.DataFrame(rows)).set_index("kind")
    assert table.loc["baseline", "top_sentence_per_trace"] == "7_correct:1"
    draw_means = [np.mean(values[f"random1_zero_draw{d}"]) for d in range(3)]
    assert table.loc["random", "mean_importance"] == pytest.approx(np.mean(draw_means))
    assert table.loc["random", "q975"] == pytest.approx(np.quantile(draw_means, 0.975))
    assert table.loc["receivers", "n_units"] == 3
    assert table.loc["receivers", "mean_difference"] == pytest.approx(-np.mean(draw_means))


def test_figures_draw_their_tables():
    scored = scored_frame(ACCURACY)
    summary, _ = receiver_vs_random(scored, CONDITIONS, match_on=["k"])
    figure, data = ablation_figure(summary.rename(columns={"heads": "receiver_heads"}))
    assert len(data) == 2 and figure.axes
    amplification = {
        name: {**spec, "scale": 2.0} if spec["kind"] != "baseline" else spec
        for name, spec in CONDITIONS.items()
    }
    table, _ = receiver_vs_random(scored, amplification)
    figure, data = amplification_figure(table)
    assert list(data["scale"]) == [1.0, 2.0] and figure.axes
    patched = {
        name: {**spec, "kind": "anchor"} if spec["kind"] == "receivers" else spec
        for name, spec in CONDITIONS.items()
    }
    renamed = scored.replace({"condition": {"top1_zero": "anchor"}})
    patched["anchor"] = patched.pop("top1_zero")
    table, draws = receiver_vs_random(renamed, patched, target_kind="anchor", match_on=["k"])
    table = table.rename(
        columns={
            "receiver_accuracy": "accuracy",
            "receiver_ci_low": "ci_low",
            "receiver_ci_high": "ci_high",
        }
    )
    figure, data = patching_figure(table, draws)
    assert len(data) == 2 + 4 and figure.axes
