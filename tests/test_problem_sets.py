"""Problem sources: the generated arithmetic set, the selected list, records, datasets (offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from anchorflow.data.problem_sets import (
    ARITHMETIC_RESOURCE,
    arithmetic_problems,
    candidate_problems,
    choose_problems,
    gold_answer,
    hub_problems,
    read_generated,
    record_problems,
    write_generated,
)

ROOT = Path(__file__).resolve().parents[1]


def test_committed_arithmetic_set_is_the_generators_output(tmp_path):
    write_generated(tmp_path / "set.jsonl", arithmetic_problems())
    assert (tmp_path / "set.jsonl").read_bytes() == (ROOT / ARITHMETIC_RESOURCE).read_bytes()


def test_arithmetic_answers_are_right_and_the_generator_is_seeded():
    problems = arithmetic_problems(60)
    assert arithmetic_problems(60) == problems
    assert arithmetic_problems(60, seed=1) != problems
    assert len({p["problem"] for p in problems}) == 60
    for problem in problems:
        text, answer = problem["problem_text"], int(problem["gt_answer"])
        numbers = [int(token.strip("?.")) for token in text.split() if token.strip("?.").isdigit()]
        a, b = numbers
        kind = problem["level"].split()[0]
        expected = {
            "sum": a + b,
            "word_sum": a + b,
            "difference": a - b,
            "word_difference": a - b,
            "product": a * b,
            "word_product": a * b,
        }[kind]
        assert answer == expected >= 0, text
    assert {p["level"] for p in problems} >= {"sum 1", "product 3", "word_difference 2"}
    with pytest.raises(ValueError, match="version"):
        arithmetic_problems(3, version=99)


SELECTED = [
    {"problem_idx": "problem_1", "problem": "P1", "gt_answer": "1", "accuracy": 0.5},
    {"problem_idx": "problem_2", "problem": "P2", "gt_answer": "2", "accuracy": 0.9},
    {"problem_idx": "problem_3", "problem": "P3", "gt_answer": "", "accuracy": 0.5},
    {"problem_idx": "problem_4", "problem": "P4", "gt_answer": "4", "accuracy": 0.25},
]
SECTION = {"accuracy_min": 0.25, "accuracy_max": 0.75, "prefix": "none", "n_candidates": None}


def _record(problem, correctness, answer, chunks):
    return {
        "rollouts": "r",
        "trace": f"{problem}_{correctness}",
        "problem": problem,
        "correctness": correctness,
        "problem_text": f"Q{problem}",
        "gt_answer": answer,
        "level": "",
        "chunks": chunks,
    }


def test_sources_give_the_same_entries():
    chosen = candidate_problems({**SECTION, "source": "selected"}, selected=SELECTED)
    assert [p["problem"] for p in chosen] == [1, 4]
    records = [
        _record(7, "incorrect", "3", ["Wrong."]),
        _record(5, "correct", "9", ["Nine."]),
        _record(7, "correct", "3", ["Right."]),
        _record(8, "correct", "", ["No answer."]),
    ]
    chosen = candidate_problems({**SECTION, "source": "records", "prefix": "reasoning"}, records)
    assert [(p["problem"], p["trace"], p["chunks"]) for p in chosen] == [
        (5, "5_correct", ["Nine."]),
        (7, "7_correct", ["Right."]),
    ]
    assert chosen == record_problems(records)
    generated = arithmetic_problems(10)
    chosen = candidate_problems(
        {**SECTION, "source": "generated", "n_candidates": 4}, generated=generated
    )
    assert chosen == generated[:4]
    with pytest.raises(ValueError, match="needs problems.source 'records'"):
        candidate_problems({**SECTION, "source": "selected", "prefix": "reasoning"})
    with pytest.raises(ValueError, match="unknown problem source"):
        candidate_problems({**SECTION, "source": "web"})


def test_choose_problems_keeps_the_accuracy_band_in_source_order():
    candidates = [{"problem": i, "level": "x"} for i in (1, 2, 3, 4)]
    scored = [
        {"problem": problem, "correct": correct}
        for problem, n_correct in ((1, 0), (2, 2), (3, 4), (4, 1))
        for correct in [True] * n_correct + [False] * (4 - n_correct)
    ]
    chosen, table = choose_problems(candidates, scored, 0.25, 0.75, None)
    assert [p["problem"] for p in chosen] == [2, 4]
    assert table["accuracy"].tolist() == [0.0, 0.5, 1.0, 0.25]
    assert table["kept"].tolist() == [False, True, False, True]
    assert table["n_samples"].tolist() == [4, 4, 4, 4]
    chosen, table = choose_problems(candidates, scored, 0.25, 0.75, 1)
    assert [p["problem"] for p in chosen] == [2]
    assert table["kept"].tolist() == [False, True, False, False]
    with pytest.raises(ValueError, match="only 2 of 4"):
        choose_problems(candidates, scored, 0.25, 0.75, 3)
    with pytest.raises(ValueError, match="no scored sample"):
        choose_problems(candidates, scored[:4], 0.25, 0.75, None)
    chosen, table = choose_problems(candidates, [], 0.25, 0.75, 2)
    assert [p["problem"] for p in chosen] == [1, 2] and table["accuracy"].isna().all()


def test_gold_answer_formats():
    assert gold_answer("Natalia sold 48/2 = 24 clips.\n#### 1,072", "gsm8k") == "1072"
    assert gold_answer(" 72 ", "plain") == "72"
    with pytest.raises(ValueError, match="####"):
        gold_answer("no marker", "gsm8k")


GSM8K_ROWS = [
    {"question": "Ann has 3 pens and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7"},
    {"question": "What is 1,000 + 234?", "answer": "1000 + 234 = 1234\n#### 1,234"},
]


@pytest.mark.parametrize("builder", ["parquet", "json"])
def test_hub_source_goes_through_load_dataset_on_local_files(tmp_path, builder):
    """The same ``datasets.load_dataset`` call as for a hub id, on a local parquet/JSON file
    laid out like openai/gsm8k's test split."""
    path = tmp_path / f"test.{builder}"
    if builder == "parquet":
        pd.DataFrame(GSM8K_ROWS).to_parquet(path)
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in GSM8K_ROWS))
    hub = {
        "path": builder,
        "split": "train",
        "data_files": str(path),
        "problem_column": "question",
        "answer_column": "answer",
        "answer_format": "gsm8k",
    }
    problems = hub_problems(hub)
    assert problems == [
        {"problem": 1, "problem_text": GSM8K_ROWS[0]["question"], "gt_answer": "7", "level": ""},
        {"problem": 2, "problem_text": GSM8K_ROWS[1]["question"], "gt_answer": "1234", "level": ""},
    ]
    section = {**SECTION, "source": "hub", "hub": hub, "n_candidates": 1}
    assert candidate_problems(section) == problems[:1]
    with pytest.raises(ValueError, match="no column"):
        hub_problems({**hub, "problem_column": "problem"})


def test_generated_set_round_trips(tmp_path):
    problems = arithmetic_problems(5)
    write_generated(tmp_path / "p.jsonl", problems)
    assert read_generated(tmp_path / "p.jsonl") == problems
