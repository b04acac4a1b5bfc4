"""Answer extraction, equivalence and accuracy summaries (method reference §10).

One extractor serves every condition of every experiment, so a no-op intervention run
through this path reproduces the baseline exactly. Equivalence: the paper's normalised string
equality, then ``math-verify``; where math-verify parses nothing, SymPy ``equals`` on the
LaTeX parsed by ``latex2sympy2_extended`` (math-verify's own parser; SymPy's
``parse_latex`` needs antlr4 4.11, which conflicts with math-verify's pin).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from anchorflow.interventions.arithmetic import arithmetic_fields
from anchorflow.interventions.loops import backtracking_loop, sentence_loop, sentences_of

BOXED_COMMANDS = ("\\boxed", "\\fbox")
THINK_START, THINK_END = "<think>", "</think>"


def _after_closing_brace(text: str, start: int) -> int | None:
    """The index just past the brace closing the group that opens before ``start``; None when
    the text ends first."""
    depth, cursor = 1, start
    while cursor < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[cursor], 0)
        cursor += 1
    return None if depth else cursor


def boxed_contents(text: str) -> list[str]:
    """The contents of every ``\\boxed{...}`` / ``\\fbox{...}`` in order, brace-balanced;
    an unclosed box at the end of the text is not an answer."""
    found = []
    pattern = re.compile(r"\\(?:boxed|fbox)\s*\{")
    position = 0
    while match := pattern.search(text, position):
        cursor = _after_closing_brace(text, match.end())
        if cursor is None:
            break
        found.append(text[match.end() : cursor - 1].strip())
        position = cursor
    return found


NOT_AN_ANSWER = ("", "None")


EXTRACTORS = ("first", "last", "number")
# A number as written in an answer: thousands groups (1,234), decimals, a sign.
NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?")


def last_number(text: str) -> str | None:
    """The last number of ``text`` (GSM8K's convention; thousands separators removed)."""
    numbers = NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


def extract_answer(text: str, which: str = "last") -> str | None:
    """The first or last boxed answer of ``text``, or None when there is none. Empty boxes and a
    boxed ``None`` are skipped, as the reference skips them. ``number``: the last boxed answer,
    else the last number of the text (for small models that rarely box)."""
    if which not in EXTRACTORS:
        raise ValueError(f"extractor must be one of {EXTRACTORS}, not {which!r}")
    answers = [answer for answer in boxed_contents(text) if answer not in NOT_AN_ANSWER]
    if not answers:
        return last_number(text) if which == "number" else None
    return answers[0] if which == "first" else answers[-1]


def _unwrap_command(text: str, command: str) -> str:
    pattern = re.compile(r"\\" + command + r"\s*\{")
    while match := pattern.search(text):
        cursor = _after_closing_brace(text, match.end())
        if cursor is None:
            break
        text = text[: match.start()] + text[match.end() : cursor - 1] + text[cursor:]
    return text


def normalize_latex(answer: str) -> str:
    """Answer normalisation after the paper's (§10.1), with the departures of docs/PARITY.md
    (118 of the selected list's 488 strings normalise differently, 1 of 106 problems groups its
    answers differently): lower-case; ``dfrac``/``tfrac`` to ``frac``;
    no whitespace, ``\\%``, ``{,}``, ``\\left``/``\\right``, ``$``; ``\\times``/``\\cdot``
    to ``*``; a decimal comma to a dot (thousands separators removed); ``\\pi`` to ``pi``;
    ``\\text{}``/``\\mathrm{}`` unwrapped; enclosing braces and a trailing period stripped."""
    text = answer.strip()
    for command in ("text", "textbf", "mathrm", "mathbf"):
        text = _unwrap_command(text, command)
    text = text.lower()
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = text.replace("\\left", "").replace("\\right", "")
    text = text.replace("\\%", "").replace("%", "").replace("$", "").replace("{,}", "")
    text = text.replace("\\!", "").replace("\\,", "").replace("\\;", "")
    text = text.replace("\\times", "*").replace("\\cdot", "*").replace("\\pi", "pi")
    text = re.sub(r"\s+", "", text)
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", text):
        text = text.replace(",", "")
    elif re.fullmatch(r"-?\d+,\d+", text):
        text = text.replace(",", ".")
    while text.startswith("{") and _closing_brace(text, 0) == len(text) - 1:
        text = text[1:-1]
    return text.rstrip(".")


def _closing_brace(text: str, start: int) -> int:
    """Index of the brace closing the one at ``start``, or -1."""
    depth = 0
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return index
    return -1


def _math_verify(prediction: str, gold: str) -> bool | None:
    """math-verify's verdict, or None when it parses nothing on either side."""
    from math_verify import parse, verify

    gold_parsed = parse(f"${gold}$")
    prediction_parsed = parse(f"${prediction}$")
    if not gold_parsed or not prediction_parsed:
        return None
    return bool(verify(gold_parsed, prediction_parsed))


def _sympy_equal(prediction: str, gold: str) -> bool:
    """SymPy ``equals`` of both answers parsed as LaTeX; False when either fails to parse."""
    from latex2sympy2_extended import latex2sympy

    try:
        left, right = latex2sympy(normalize_latex(prediction)), latex2sympy(normalize_latex(gold))
        return bool(left.equals(right))
    except Exception:  # noqa: BLE001 - any parse or comparison failure means "not shown equal"
        return False


def answers_match(prediction: str | None, gold: str) -> tuple[bool, str]:
    """``(equivalent, method)``; method is ``string``, ``math_verify``, ``sympy`` or ``none``."""
    if prediction is None or not prediction.strip():
        return False, "none"
    if normalize_latex(prediction) == normalize_latex(gold):
        return True, "string"
    verdict = _math_verify(prediction, gold)
    if verdict is not None:
        return verdict, "math_verify"
    return _sympy_equal(prediction, gold), "sympy"


def score_text(text: str, gold: str, which: str = "last") -> dict[str, Any]:
    """Per generation: ``finished`` (``</think>`` seen), ``boxed``, ``answer``, ``correct``
    (the answer matches, whether or not the trace finished) and the ``match_method``."""
    answer = extract_answer(text, which)
    correct, method = answers_match(answer, gold)
    return {
        "finished": THINK_END in text,
        "boxed": extract_answer(text, "last") is not None,
        "answer": answer,
        "correct": correct,
        "match_method": method,
    }


def opens_thinking(prompt: str) -> bool:
    """Whether a prompt ends inside a thinking block (its last ``<think>`` is not closed)."""
    return prompt.rfind(THINK_START) > prompt.rfind(THINK_END)


def wilson_interval(successes: int, total: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of a binomial proportion
    (``scipy.stats.binomtest(...).proportion_ci(method="wilson")``, exactly 0 at 0 successes and
    1 at ``total``); ``(nan, nan)`` for ``total == 0``."""
    if total == 0:
        return math.nan, math.nan
    interval = stats.binomtest(successes, total).proportion_ci(0.95, method="wilson")
    return float(interval.low), float(interval.high)


def summarise(rows: Iterable[Mapping[str, Any]], by: Sequence[str]) -> pd.DataFrame:
    """Accuracy table per group: ``n``, ``accuracy`` (correct and finished; unfinished counts
    as wrong) with its 95 % Wilson interval, ``accuracy_any`` (correct, finished or not),
    ``conditional_accuracy`` (among finished), ``finished_rate``, ``boxed_rate``, mean tokens."""
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        raise ValueError("no scored generations to summarise")
    summaries = []
    for keys, group in frame.groupby(list(by), sort=True):
        n = len(group)
        strict = int((group["correct"] & group["finished"]).sum())
        finished = int(group["finished"].sum())
        low, high = wilson_interval(strict, n)
        summaries.append(
            {
                **dict(zip(by, keys if isinstance(keys, tuple) else (keys,), strict=True)),
                "n": n,
                "n_correct": strict,
                "accuracy": strict / n,
                "ci_low": low,
                "ci_high": high,
                "accuracy_any": float(group["correct"].mean()),
                "conditional_accuracy": strict / finished if finished else math.nan,
                "finished_rate": finished / n,
                "boxed_rate": float(group["boxed"].mean()),
                "mean_tokens": float(group["n_tokens"].mean()),
            }
        )
    return pd.DataFrame(summaries)


def repetition_loop(text: str, min_repeats: int, max_period: int, min_chars: int) -> bool:
    """Whether ``text`` holds a repetition loop: a unit of ``p <= max_period`` characters
    repeated at least ``min_repeats`` times in a row, the repeated span covering at least
    ``min_chars`` characters. Exact: for each period ``p``, the longest run of
    ``text[i] == text[i + p]`` of length ``L`` is a periodic span of ``L + p`` characters."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    for period in range(1, min(max_period, len(codes) // min_repeats) + 1):
        same = np.concatenate(([False], codes[period:] == codes[:-period], [False]))
        edges = np.flatnonzero(np.diff(same.astype(np.int8)))
        if edges.size == 0:
            continue
        longest = int((edges[1::2] - edges[0::2]).max())
        span = longest + period
        if span >= max(min_repeats * period, min_chars):
            return True
    return False


def failure_fields(
    text: str, stopped: bool, answer: str | None, settings: Mapping[str, int]
) -> dict:
    """Per generation: ``repetition_loop`` (characters), ``sentence_loop`` and
    ``backtracking_loop`` (:mod:`~anchorflow.interventions.loops`), the arithmetic statements
    checked (:func:`~anchorflow.interventions.arithmetic.arithmetic_fields`), ``unfinished``
    (ran out of tokens without a stop token) and ``no_box`` (no non-empty boxed answer)."""
    sentences = sentences_of(text)
    return {
        "repetition_loop": repetition_loop(
            text, settings["min_repeats"], settings["max_period"], settings["min_chars"]
        ),
        "sentence_loop": sentence_loop(sentences, settings["sentence_repeats"]),
        "backtracking_loop": backtracking_loop(sentences, settings["backtrack_repeats"]),
        **arithmetic_fields(text),
        "unfinished": not stopped,
        "no_box": answer is None,
    }


def score_rows(
    rows: Iterable[Mapping[str, Any]],
    extractor: str,
    failure_modes: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Generation rows (``text``, ``gt_answer``, ``stopped``, ...) with the :func:`score_text`
    fields (and, given ``failure_modes`` settings, the failure-mode fields) added and ``text``
    dropped. A row's ``answer_cue`` (prompt text that opened the answer) is read before its
    text; a row whose prompt opened no thinking block (``thinks`` false: a chat prompt of a
    model without one) is finished when it stopped."""
    scored = []
    for row in rows:
        text = row.get("answer_cue", "") + row["text"]
        fields = score_text(text, row["gt_answer"], extractor)
        if not row.get("thinks", True):
            fields["finished"] = bool(row["stopped"])
        if failure_modes is not None:
            boxed = fields["answer"] if fields["boxed"] else None
            fields |= failure_fields(text, row["stopped"], boxed, failure_modes)
        scored.append({**{k: v for k, v in row.items() if k != "text"}, **fields})
    return scored
