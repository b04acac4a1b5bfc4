"""Answer extraction, equivalence and accuracy summaries (method reference §10)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anchorflow.interventions.scoring import (
    answers_match,
    extract_answer,
    normalize_latex,
    opens_thinking,
    score_rows,
    score_text,
    summarise,
    wilson_interval,
)


def test_extractor_is_brace_balanced_first_or_last():
    text = "draft \\boxed{\\frac{1}{2}} then \\boxed{ 3 } and a broken \\boxed{4"
    assert extract_answer(text, "first") == "\\frac{1}{2}"
    assert extract_answer(text, "last") == "3"
    assert extract_answer("no answer here") is None
    assert extract_answer("\\boxed{\\text{(A)}}") == "\\text{(A)}"
    with pytest.raises(ValueError):
        extract_answer(text, "middle")


def test_empty_and_none_boxes_are_no_answer():
    text = "\\boxed{12} and later \\boxed{} then \\boxed{ None }"
    assert extract_answer(text, "last") == "12"
    assert extract_answer(text, "first") == "12"
    assert extract_answer("\\boxed{}") is None
    assert extract_answer("\\boxed{None} \\boxed{}") is None


@pytest.mark.parametrize(
    ("prediction", "gold"),
    [
        ("-\\frac{1}{4027}", "-\\frac{1} { 4027}"),
        ("6.17", "6.17"),
        ("16\\sqrt{3}", "16\\sqrt{3}"),
        ("16 \\sqrt 3", "16\\sqrt{3}"),
        ("\\dfrac{289}{259}", "\\frac{289}{259}"),
        ("\\frac{-5}{12}", "-\\frac{5}{12}"),
        ("0.2", "\\frac{1}{5}"),
        ("88,572", "88572"),
        ("\\text{August}", "\\text{August}"),
    ],
)
def test_equivalent_answer_pairs(prediction, gold):
    assert answers_match(prediction, gold)[0]


@pytest.mark.parametrize(
    ("prediction", "gold"),
    [
        ("6.18", "6.17"),
        ("16\\sqrt{2}", "16\\sqrt{3}"),
        ("\\frac{289}{258}", "\\frac{289}{259}"),
        ("4027", "-\\frac{1}{4027}"),
        (None, "1"),
        ("", "1"),
    ],
)
def test_different_answer_pairs(prediction, gold):
    assert not answers_match(prediction, gold)[0]


@settings(max_examples=40, deadline=None)
@given(st.integers(-(10**6), 10**6), st.sampled_from(["{}", " {} ", "{{{}}}", "{}.", "${}$"]))
def test_integers_in_different_formats(value, template):
    assert answers_match(template.format(value), str(value))[0]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 500), st.integers(2, 500), st.booleans())
def test_fractions_in_different_formats(numerator, denominator, negative):
    value = Fraction(numerator, denominator) * (-1 if negative else 1)
    sign = "-" if value < 0 else ""
    gold = f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"
    for prediction in (
        f"{sign}\\dfrac{{{abs(value.numerator)}}} {{ {value.denominator}}}",
        f"{sign}{abs(value.numerator)}/{value.denominator}",
    ):
        assert answers_match(prediction, gold)[0], (prediction, gold)
    assert not answers_match(
        f"{sign}\\frac{{{abs(value.numerator) + value.denominator}}}{{{value.denominator}}}", gold
    )[0]


def test_normalisation_follows_the_paper():
    assert normalize_latex(" \\dfrac{1}{2} ") == "\\frac{1}{2}"
    assert normalize_latex("50\\%") == "50"
    assert normalize_latex("3\\times 4") == "3*4"
    assert normalize_latex("2\\pi") == "2pi"
    assert normalize_latex("\\text{Hello}") == "hello"
    assert normalize_latex("{a}+{b}") == "{a}+{b}"


def test_score_text_fields():
    row = score_text("so x=2</think> the answer is \\boxed{2}", "2")
    assert row == {
        "finished": True,
        "boxed": True,
        "answer": "2",
        "correct": True,
        "match_method": "string",
    }
    assert score_text("still thinking \\boxed{2}", "2")["finished"] is False


@pytest.mark.parametrize(("successes", "total"), [(5, 20), (3, 7), (19, 20), (1, 96)])
def test_wilson_interval_matches_its_formula(successes, total):
    z = 1.959963984540054  # the 97.5 % normal quantile
    phat = successes / total
    centre = (phat + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(phat * (1 - phat) / total + z * z / (4 * total**2)) / (1 + z * z / total)
    low, high = wilson_interval(successes, total)
    assert low == pytest.approx(centre - half, abs=1e-12)
    assert high == pytest.approx(centre + half, abs=1e-12)


def test_wilson_interval_edges():
    assert wilson_interval(0, 10)[0] == 0.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    # at n = 96 the formula's lower bound for 0 successes is 3.5e-18, not 0
    for total in range(1, 200):
        assert wilson_interval(0, total)[0] == 0.0
        assert wilson_interval(total, total)[1] == 1.0


def test_summarise_counts_unfinished_as_wrong():
    rows = [
        {"condition": "a", "correct": True, "finished": True, "boxed": True, "n_tokens": 10},
        {"condition": "a", "correct": True, "finished": False, "boxed": True, "n_tokens": 20},
        {"condition": "a", "correct": False, "finished": True, "boxed": False, "n_tokens": 30},
        {"condition": "b", "correct": False, "finished": False, "boxed": False, "n_tokens": 5},
    ]
    table = summarise(rows, ["condition"]).set_index("condition")
    assert table.loc["a", "accuracy"] == pytest.approx(1 / 3)
    assert table.loc["a", "accuracy_any"] == pytest.approx(2 / 3)
    assert table.loc["a", "conditional_accuracy"] == pytest.approx(1 / 2)
    assert table.loc["a", "finished_rate"] == pytest.approx(2 / 3)
    assert table.loc["a", "mean_tokens"] == 20
    assert math.isnan(table.loc["b", "conditional_accuracy"])


def test_real_selected_problems_answers():
    """On the paper's 106 problems: every observed correct answer matches the gold answer and
    no observed incorrect answer does, except one that only differs by a ``y =`` prefix."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "resources" / "selected_problems.json"
    problems = json.loads(path.read_text(encoding="utf-8"))
    assert len(problems) == 106
    missed = [
        (p["problem_idx"], answer)
        for p in problems
        for answer in p["correct_answers"]
        if not answers_match(answer, p["gt_answer"])[0]
    ]
    accepted = [
        (p["problem_idx"], answer)
        for p in problems
        for answer in p["incorrect_answers"]
        if answers_match(answer, p["gt_answer"])[0]
    ]
    assert missed == []
    assert accepted == [("problem_6940", "y = \\dfrac{x^2}{4} - 1")]


def test_number_extractor_takes_the_last_box_else_the_last_number():
    assert extract_answer("So 3 + 4 = 7.", "number") == "7"
    assert extract_answer("Total: 1,234 apples, not 12.5", "number") == "12.5"
    assert extract_answer("We get 1,234 apples.", "number") == "1234"
    assert extract_answer("It is -5, since 2 - 7 = -5.", "number") == "-5"
    assert extract_answer("\\boxed{42} and then 7", "number") == "42"
    assert extract_answer("The answer is \\boxed{}. So 9.", "number") == "9"
    assert extract_answer("no digits here", "number") is None
    assert extract_answer("So 7.", "last") is None
    with pytest.raises(ValueError, match="extractor"):
        extract_answer("x", "middle")


def test_score_rows_reads_the_answer_cue_before_the_text():
    rows = [
        {"text": "120} because", "gt_answer": "120", "stopped": True, "answer_cue": "is \\boxed{"},
        {"text": "The sum is 7.", "gt_answer": "7", "stopped": False},
    ]
    settings = {"min_repeats": 3, "max_period": 8, "min_chars": 12}
    settings |= {"sentence_repeats": 3, "backtrack_repeats": 3}
    boxed, unboxed = score_rows(rows, "number", settings)
    assert boxed["answer"] == "120" and boxed["correct"] and boxed["boxed"]
    assert not boxed["no_box"] and boxed["answer_cue"] == "is \\boxed{"
    assert unboxed["answer"] == "7" and unboxed["correct"]
    assert not unboxed["boxed"] and unboxed["no_box"] and unboxed["unfinished"]


def test_finished_means_think_closed_or_stopped_when_no_thinking_was_opened():
    assert opens_thinking("Problem: x Solution: \n<think>\n")
    assert not opens_thinking("<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n")
    assert not opens_thinking("<think>a</think> answer")
    rows = [
        {"text": "4", "gt_answer": "4", "stopped": True, "thinks": False},
        {"text": "4", "gt_answer": "4", "stopped": False, "thinks": False},
        {"text": "4", "gt_answer": "4", "stopped": True},
    ]
    assert [row["finished"] for row in score_rows(rows, "number")] == [True, False, False]
