"""Problem sets of the accuracy experiments: the generated arithmetic set, the paper's
selected-problems list, the traces' own problems, or any Hugging Face dataset.

Every source gives the same entries: ``{problem, problem_text, gt_answer, level}`` (``problem``
an integer id; records also carry ``trace`` and ``chunks``). The arithmetic generator is
versioned: a given ``(version, seed, n)`` always writes the same problems
(``resources/arithmetic_problems.jsonl`` is its committed output).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

ARITHMETIC_VERSION = 1
ARITHMETIC_SEED = 0
ARITHMETIC_COUNT = 240
ARITHMETIC_RESOURCE = Path("resources/arithmetic_problems.jsonl")
SOURCES = ("generated", "selected", "records", "hub")
# Operand ranges per level: 1 = one digit or teens, 2 = two digits, 3 = three digits
# (products use smaller factors at every level).
SUM_RANGES = {1: (2, 20), 2: (10, 99), 3: (100, 999)}
PRODUCT_RANGES = {1: (2, 9), 2: (3, 20), 3: (11, 99)}
NAMES = ("Tom", "Maria", "Ken", "Aisha", "Lena", "Omar", "Priya", "Jack")
OBJECTS = ("apples", "pencils", "stickers", "marbles", "books", "coins", "shells", "cards")


def _sum(rng: random.Random, level: int) -> tuple[str, int]:
    a, b = (rng.randint(*SUM_RANGES[level]) for _ in range(2))
    return f"What is {a} + {b}?", a + b


def _difference(rng: random.Random, level: int) -> tuple[str, int]:
    a, b = sorted((rng.randint(*SUM_RANGES[level]) for _ in range(2)), reverse=True)
    return f"What is {a} - {b}?", a - b


def _product(rng: random.Random, level: int) -> tuple[str, int]:
    a, b = (rng.randint(*PRODUCT_RANGES[level]) for _ in range(2))
    return f"What is {a} times {b}?", a * b


def _word_sum(rng: random.Random, level: int) -> tuple[str, int]:
    name, thing = rng.choice(NAMES), rng.choice(OBJECTS)
    a, b = (rng.randint(*SUM_RANGES[level]) for _ in range(2))
    text = f"{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have now?"
    return text, a + b


def _word_difference(rng: random.Random, level: int) -> tuple[str, int]:
    name, thing = rng.choice(NAMES), rng.choice(OBJECTS)
    a, b = sorted((rng.randint(*SUM_RANGES[level]) for _ in range(2)), reverse=True)
    text = f"{name} has {a} {thing} and gives away {b}. How many {thing} are left?"
    return text, a - b


def _word_product(rng: random.Random, level: int) -> tuple[str, int]:
    thing = rng.choice(OBJECTS)
    a, b = (rng.randint(*PRODUCT_RANGES[level]) for _ in range(2))
    text = f"There are {a} boxes with {b} {thing} in each box. How many {thing} are there in total?"
    return text, a * b


KINDS: dict[str, Callable[[random.Random, int], tuple[str, int]]] = {
    "sum": _sum,
    "difference": _difference,
    "product": _product,
    "word_sum": _word_sum,
    "word_difference": _word_difference,
    "word_product": _word_product,
}


def arithmetic_problems(
    n: int = ARITHMETIC_COUNT, seed: int = ARITHMETIC_SEED, version: int = ARITHMETIC_VERSION
) -> list[dict[str, Any]]:
    """``n`` two-number arithmetic and one-step word problems with integer gold answers,
    cycling through the kinds and levels 1-3; ``level`` is ``"{kind} {level}"``."""
    if version != ARITHMETIC_VERSION:
        raise ValueError(
            f"arithmetic generator version {version} is not this code's {ARITHMETIC_VERSION}"
        )
    rng = random.Random(f"anchorflow-arithmetic-v{version}-{seed}")
    problems = []
    kinds = list(KINDS)
    for index in range(n):
        kind = kinds[index % len(kinds)]
        level = 1 + (index // len(kinds)) % 3
        text, answer = KINDS[kind](rng, level)
        problems.append(
            {
                "problem": index + 1,
                "problem_text": text,
                "gt_answer": str(answer),
                "level": f"{kind} {level}",
                "generator": {"name": "arithmetic", "version": version, "seed": seed},
            }
        )
    return problems


def gold_answer(value: Any, answer_format: str) -> str:
    """The gold answer of a dataset cell: ``plain`` = the cell as text; ``gsm8k`` = what
    follows the last ``####`` (thousands separators removed)."""
    text = str(value).strip()
    if answer_format == "plain":
        return text
    if answer_format == "gsm8k":
        if "####" not in text:
            raise ValueError(f"a gsm8k answer needs '#### <answer>', got {text[-80:]!r}")
        return text.rsplit("####", 1)[1].strip().replace(",", "")
    raise ValueError(f"unknown answer format {answer_format!r}; expected 'plain' or 'gsm8k'")


def hub_problems(hub: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Problems from ``datasets.load_dataset(path, name, split=split, data_files=data_files)``,
    with ``problem_column`` / ``answer_column`` (and an optional ``level_column``) mapped to the
    entries; ids are the row numbers (1-based)."""
    from datasets import load_dataset

    dataset = load_dataset(
        hub["path"],
        hub.get("name"),
        split=hub["split"],
        data_files=hub.get("data_files"),
        revision=hub.get("revision"),
    )
    columns = [hub["problem_column"], hub["answer_column"]] + (
        [hub["level_column"]] if hub.get("level_column") else []
    )
    missing = [column for column in columns if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"dataset {hub['path']!r} has no column {missing}; it has {dataset.column_names}"
        )
    return [
        {
            "problem": index + 1,
            "problem_text": str(row[hub["problem_column"]]),
            "gt_answer": gold_answer(row[hub["answer_column"]], hub.get("answer_format", "plain")),
            "level": str(row[hub["level_column"]]) if hub.get("level_column") else "",
        }
        for index, row in enumerate(dataset)
    ]


def record_problems(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per problem with a gold answer, sorted by id; its trace is the correct one
    when the problem has one (so a reasoning prefix reaches the gold answer)."""
    by_id: dict[int, dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: (int(r["problem"]), r["correctness"] != "correct")):
        by_id.setdefault(
            int(record["problem"]),
            {
                "problem": int(record["problem"]),
                "problem_text": record["problem_text"],
                "gt_answer": record["gt_answer"],
                "level": record.get("level", ""),
                "trace": record["trace"],
                "chunks": list(record["chunks"]),
            },
        )
    return [by_id[key] for key in sorted(by_id) if by_id[key]["gt_answer"]]


def selected_list_problems(
    selected: Sequence[Mapping[str, Any]], accuracy_min: float, accuracy_max: float
) -> list[dict[str, Any]]:
    """The ``selected_problems.json`` entries with a gold answer whose listed accuracy lies in
    ``[accuracy_min, accuracy_max]``, in list order."""
    return [
        {
            "problem": int(entry["problem_idx"].removeprefix("problem_")),
            "problem_text": entry["problem"],
            "gt_answer": entry["gt_answer"],
            "level": entry.get("level", ""),
        }
        for entry in selected
        if entry.get("gt_answer") and accuracy_min <= entry["accuracy"] <= accuracy_max
    ]


def read_generated(path: str | Path) -> list[dict[str, Any]]:
    """The problems of a generated set (JSON lines, as :func:`write_generated` writes them)."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_generated(path: str | Path, problems: Sequence[Mapping[str, Any]]) -> None:
    """One problem per line, keys sorted (the committed resource file)."""
    text = "".join(json.dumps(problem, sort_keys=True) + "\n" for problem in problems)
    Path(path).write_text(text, encoding="utf-8")


def candidate_problems(
    section: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]] = (),
    selected: Sequence[Mapping[str, Any]] = (),
    generated: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The candidates of ``section["source"]`` (the ``interventions.problems`` section), the
    first ``n_candidates`` of them (all when null). The selected list is filtered by its own
    accuracy; a reasoning prefix needs the records (their traces)."""
    source = section["source"]
    if section.get("prefix", "none") != "none" and source != "records":
        raise ValueError("a reasoning prefix needs problems.source 'records' (their traces)")
    if source == "generated":
        candidates = [dict(problem) for problem in generated]
    elif source == "selected":
        candidates = selected_list_problems(
            selected, section["accuracy_min"], section["accuracy_max"]
        )
    elif source == "records":
        candidates = record_problems(records)
    elif source == "hub":
        candidates = hub_problems(section["hub"])
    else:
        raise ValueError(f"unknown problem source {source!r}; expected one of {SOURCES}")
    if section.get("n_candidates") is not None:
        candidates = candidates[: section["n_candidates"]]
    if not candidates:
        raise ValueError(f"problem source {source!r} gives no problem with a gold answer")
    return candidates


def choose_problems(
    candidates: Sequence[Mapping[str, Any]],
    scored: Sequence[Mapping[str, Any]],
    accuracy_min: float,
    accuracy_max: float,
    n_problems: int | None,
) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """The first ``n_problems`` candidates whose sampled accuracy lies in
    ``[accuracy_min, accuracy_max]``, and the table of every candidate
    (``problem, level, n_samples, n_correct, accuracy, kept``).

    ``scored``: scored baseline samples (``problem``, ``correct``); none = no sampling, every
    candidate qualifies (accuracy NaN). Fewer qualifying problems than asked is an error.
    """
    counts: dict[int, list[int]] = {int(c["problem"]): [0, 0] for c in candidates}
    for row in scored:
        tally = counts[int(row["problem"])]
        tally[0] += 1
        tally[1] += bool(row["correct"])
    table = pd.DataFrame(
        [
            {
                "problem": int(c["problem"]),
                "level": c.get("level", ""),
                "n_samples": counts[int(c["problem"])][0],
                "n_correct": counts[int(c["problem"])][1],
            }
            for c in candidates
        ]
    )
    sampled = table["n_samples"] > 0
    table["accuracy"] = (table["n_correct"] / table["n_samples"]).where(sampled)
    qualifies = ~sampled | table["accuracy"].between(accuracy_min, accuracy_max)
    if scored and not sampled.all():
        missing = table.loc[~sampled, "problem"].tolist()
        raise ValueError(f"candidates {missing[:5]} have no scored sample")
    chosen_index = list(table.index[qualifies])
    if n_problems is not None:
        if len(chosen_index) < n_problems:
            raise ValueError(
                f"only {len(chosen_index)} of {len(candidates)} candidates have an accuracy in "
                f"[{accuracy_min}, {accuracy_max}]; {n_problems} requested"
            )
        chosen_index = chosen_index[:n_problems]
    table["kept"] = table.index.isin(chosen_index)
    return [dict(candidates[i]) for i in chosen_index], table


def main() -> None:
    """Write the committed arithmetic set: ``python -m anchorflow.data.problem_sets [path]``."""
    import sys

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ARITHMETIC_RESOURCE
    write_generated(target, arithmetic_problems())
    print(target)


if __name__ == "__main__":
    main()
