"""The arithmetic checker on hand-written statements (right, wrong, unparsed, ignored), and its
parse rate on the real traces."""

from __future__ import annotations

from fractions import Fraction

import pytest
from real_data import real_trace_folders

from anchorflow.interventions.arithmetic import arithmetic_fields, evaluate, statements

RIGHT = [
    "3 + 4 = 7",
    "12 - 5 = 7",
    "6 * 7 = 42",
    "6 × 7 = 42",
    "6 \\times 7 = 42",
    "6 \\cdot 7 = 42",
    "56 / 8 = 7",
    "56 ÷ 8 = 7",
    "3/4 = 0.75",
    "1,000 + 2 = 1002",
    "2^3 = 8",
    "2^{10} = 1024",
    "2**5 = 32",
    "(3 + 4) * 2 = 14",
    "3 + 4 * 2 = 11",
    "12 / 4 = 3 = 6 - 3",
    "3 - 5 = -2",
    "-3 * -3 = 9",
    "0.1 + 0.2 = 0.3",
    "\\frac{3}{4} = 0.75",
    "\\frac{1}{2} + \\frac{1}{4} = \\frac{3}{4}",
    "1/3 = 0.333",
    "2/3 = 0.667",
    "10 − 4 = 6",
    "1,234,567 - 1 = 1,234,566",
    "7 * (2 + 3) = 35",
]
WRONG = [
    "3 + 4 = 8",
    "6 * 7 = 43",
    "2^3 = 6",
    "1/3 = 0.3334",
    "12 / 4 = 3 = 6 - 2",
    "3 + 4 * 2 = 14",
    "1,000 + 2 = 1003",
]
UNPARSED = ["3 + = 4", "5 / 0 = 1", "2 ^ 100000 = 1", "(3 + 4 = 7"]
IGNORED = ["x = 5", "2x + 3 = 7", "n - 1 = 4", "a_1 + 2 = 3", "f(3) = 9", "7 = 7", "x^2 = 4"]


@pytest.mark.parametrize("text", RIGHT)
def test_right_statements(text):
    (statement,) = statements(f"So {text}, and then")
    assert statement.parsed and statement.right, statement


@pytest.mark.parametrize("text", WRONG)
def test_wrong_statements(text):
    (statement,) = statements(f"Wait, {text}.")
    assert statement.parsed and not statement.right, statement


@pytest.mark.parametrize("text", UNPARSED)
def test_unparsable_candidates_are_counted_not_guessed(text):
    (statement,) = statements(text)
    assert not statement.parsed


@pytest.mark.parametrize("text", IGNORED)
def test_what_is_not_arithmetic_is_ignored(text):
    assert statements(f"Let {text} here.") == []


def test_evaluation_is_exact():
    assert evaluate("1/3 + 1/6") == Fraction(1, 2)
    assert evaluate("2^-2") == Fraction(1, 4)
    assert evaluate("2^3^2") == 512  # right-associative
    with pytest.raises(ValueError):
        evaluate("2 ^ 0.5")


def test_fields_of_one_generation():
    text = "First 3 + 4 = 7. Then 7 * 2 = 15. Let x = 2. So 5 + = 3 is a typo. Finally 2^3 = 8."
    fields = arithmetic_fields(text)
    assert fields == {
        "arithmetic_statements": 4,
        "arithmetic_unparsed": 1,
        "arithmetic_wrong": 1,
        "arithmetic_error_share": pytest.approx(1 / 3),
    }


def test_parse_rate_on_the_real_traces():
    """Every real trace's chain of thought: most candidates parse; the numbers are those of
    docs/METHODS.md (failure modes)."""
    import json

    found = []
    for folder in real_trace_folders():
        found += statements(json.loads((folder / "base_solution.json").read_text())["full_cot"])
    parsed = [s for s in found if s.parsed]
    assert len(found) >= 100
    assert len(parsed) / len(found) >= 0.9
    assert sum(s.right for s in parsed) / len(parsed) >= 0.8


@pytest.mark.parametrize(
    ("text", "right"),
    [("2 * 3 = 6 + 1 = 7", True), ("2 * 3 = 6 + 1 = 8", False), ("0.333 = 1/3 + 0", True)],
)
def test_running_totals_and_rounding_in_either_place(text, right):
    (statement,) = statements(text)
    assert statement.parsed and statement.right == right
