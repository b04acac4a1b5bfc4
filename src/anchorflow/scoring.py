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

import pandas as pd

BOXED_COMMANDS = ("\\boxed", "\\fbox")
THINK_END = "</think>"
WILSON_Z = 1.959963984540054


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


def extract_answer(text: str, which: str = "last") -> str | None:
    """The first or last boxed answer of ``text``, or None when there is none. Empty boxes and a
    boxed ``None`` are skipped, as the reference skips them."""
    if which not in ("first", "last"):
        raise ValueError(f"extractor must be 'first' or 'last', not {which!r}")
    answers = [answer for answer in boxed_contents(text) if answer not in NOT_AN_ANSWER]
    if not answers:
        return None
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
    """The paper's answer normalisation (§10.1): lower-case; ``dfrac``/``tfrac`` to ``frac``;
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
        "boxed": answer is not None,
        "answer": answer,
        "correct": correct,
        "match_method": method,
    }


def wilson_interval(successes: int, total: int, z: float = WILSON_Z) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion; ``(nan, nan)`` for ``total == 0``."""
    if total == 0:
        return math.nan, math.nan
    phat = successes / total
    denominator = 1 + z * z / total
    centre = (phat + z * z / (2 * total)) / denominator
    half = z * math.sqrt(phat * (1 - phat) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


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


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub Markdown table of ``frame`` (floats rounded to ``digits``)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.{digits}f}"
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(str(column) for column in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = [
        "| " + " | ".join(cell(value) for value in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body]) + "\n"


def score_rows(rows: Iterable[Mapping[str, Any]], extractor: str) -> list[dict[str, Any]]:
    """Generation rows (``text``, ``gt_answer``, ...) with the :func:`score_text` fields added
    and ``text`` dropped."""
    return [
        {
            **{key: value for key, value in row.items() if key != "text"},
            **score_text(row["text"], row["gt_answer"], extractor),
        }
        for row in rows
    ]


def _heads_label(heads: Sequence[Sequence[int]]) -> str:
    return " ".join(f"L{layer}H{head}" for layer, head in heads)


def amplification_table(
    accuracy: pd.DataFrame, conditions: Mapping[str, Mapping[str, Any]]
) -> pd.DataFrame:
    """Accuracy per (head-set size, scale); the baseline row has ``k = 0`` and scale 1."""
    frame = accuracy.copy()
    frame.insert(1, "k", [int(conditions[c].get("k", 0)) for c in frame["condition"]])
    frame.insert(2, "scale", [float(conditions[c].get("scale", 1.0)) for c in frame["condition"]])
    frame["heads"] = [_heads_label(conditions[c]["heads"]) for c in frame["condition"]]
    return frame.sort_values(["k", "scale"], kind="stable").reset_index(drop=True)


def ablation_table(
    accuracy: pd.DataFrame, conditions: Mapping[str, Mapping[str, Any]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(summary, draws)``: per k, the receiver-head accuracy with its Wilson interval and
    the random-head accuracy as mean ± 95 % t-interval across draws; ``draws`` lists every
    random draw's heads and accuracy."""
    from scipy import stats

    by_condition = accuracy.set_index("condition")
    baseline = by_condition.loc["baseline"]
    draws = (
        pd.DataFrame(
            [
                {
                    "k": spec["k"],
                    "draw": spec["draw"],
                    "draw_seed": spec["draw_seed"],
                    "condition": name,
                    "heads": _heads_label(spec["heads"]),
                    "accuracy": by_condition.loc[name, "accuracy"],
                    "n": by_condition.loc[name, "n"],
                }
                for name, spec in conditions.items()
                if spec["kind"] == "random"
            ]
        )
        .sort_values(["k", "draw"])
        .reset_index(drop=True)
    )
    rows = [
        {
            "k": 0,
            "receiver_heads": "",
            "receiver_accuracy": baseline["accuracy"],
            "receiver_ci_low": baseline["ci_low"],
            "receiver_ci_high": baseline["ci_high"],
            "random_mean": baseline["accuracy"],
            "random_ci_low": math.nan,
            "random_ci_high": math.nan,
            "n_draws": 0,
        }
    ]
    for name, spec in sorted(conditions.items(), key=lambda item: item[1].get("k", 0)):
        if spec["kind"] != "receivers":
            continue
        k = spec["k"]
        random_acc = draws.loc[draws["k"] == k, "accuracy"].to_numpy(dtype=float)
        mean = float(random_acc.mean())
        half = (
            float(
                stats.t.ppf(0.975, len(random_acc) - 1)
                * random_acc.std(ddof=1)
                / math.sqrt(len(random_acc))
            )
            if len(random_acc) > 1
            else math.nan
        )
        rows.append(
            {
                "k": k,
                "receiver_heads": _heads_label(spec["heads"]),
                "receiver_accuracy": by_condition.loc[name, "accuracy"],
                "receiver_ci_low": by_condition.loc[name, "ci_low"],
                "receiver_ci_high": by_condition.loc[name, "ci_high"],
                "random_mean": mean,
                "random_ci_low": mean - half,
                "random_ci_high": mean + half,
                "n_draws": len(random_acc),
            }
        )
    return pd.DataFrame(rows), draws
