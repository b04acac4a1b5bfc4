"""Explicit arithmetic in generated text, checked exactly (a failure mode of amplified heads).

A *statement* is a run of arithmetic with at least one ``=`` and at least one operator, such as
``3 + 4 = 7``, ``1,000 + 2 = 1002``, ``2^3 = 8``, ``\\frac{3}{4} = 0.75`` or the chain
``12 / 4 = 3 = 6 - 3``. Its sides are evaluated with :class:`fractions.Fraction` (no floating
point); the statement is *right* when every side equals the one before it, where a side written
as a decimal literal with ``d`` places may be the value rounded or truncated to ``d`` places
(``1/3 = 0.333``, ``2/3 = 0.667``), and a side that starts with the previous side's value
continues it as a running total (``2 * 3 = 6 + 1 = 7``). A run that touches a letter or ends in
an operator (``x = 5``, ``2x + 3 = 7``, ``n - 1 = 4``) is no arithmetic statement and is
ignored; a candidate whose sides do not parse (``3 + = 4``) is counted as *unparsed*, never
guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

LATEX = (
    (re.compile(r"\\d?frac\{([^{}]*)\}\{([^{}]*)\}"), r"((\1)/(\2))"),
    (re.compile(r"\^\{([^{}]*)\}"), r"^(\1)"),
    (re.compile(r"\\(?:times|cdot)"), "*"),
    (re.compile(r"\\div"), "/"),
    (re.compile(r"\\(?:left|right)"), ""),
    (re.compile(r"\\[\[\]()]|\$"), " "),
    (re.compile(r"[×·∙]"), "*"),
    (re.compile(r"÷"), "/"),
    (re.compile(r"[−–]"), "-"),
    (re.compile(r"\*\*"), "^"),
)

# A run of arithmetic: numbers (thousands commas, decimals), operators, parentheses, spaces, '='.
NUMBER = r"\d{1,3}(?:,\d{3})+(?!\d)|\d+(?:\.\d+)?|\.\d+"
RUN = re.compile(rf"(?:{NUMBER}|[-+*/^()=]|[ \t])+")
TOKEN = re.compile(rf"\s*({NUMBER}|[-+*/^()])")
OPERATORS = set("+-*/^")
MAX_POWER_BITS = 100_000  # 2^(4028) is checked, 2^100000 is counted as unparsed


@dataclass(frozen=True)
class Statement:
    """One arithmetic statement: its text and whether it ``parsed`` and is ``right``."""

    text: str
    parsed: bool
    right: bool


class _Parser:
    """Recursive descent over ``+ -``, ``* /``, unary minus, ``^`` (right-associative), ``( )``."""

    def __init__(self, text: str) -> None:
        self.tokens, position = [], 0
        while position < len(text):
            if text[position:].strip() == "":
                break
            match = TOKEN.match(text, position)
            if not match:
                raise ValueError(f"unreadable at {text[position:]!r}")
            self.tokens.append(match.group(1))
            position = match.end()
        self.index = 0

    def parse(self) -> Fraction:
        value = self.sum()
        if self.index != len(self.tokens):
            raise ValueError(f"left over: {self.tokens[self.index :]}")
        return value

    def peek(self) -> str | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise ValueError("unexpected end")
        self.index += 1
        return token

    def sum(self) -> Fraction:
        value = self.product()
        while self.peek() in ("+", "-"):
            value = value + self.product() if self.take() == "+" else value - self.product()
        return value

    def product(self) -> Fraction:
        value = self.unary()
        while self.peek() in ("*", "/"):
            if self.take() == "*":
                value *= self.unary()
            else:
                divisor = self.unary()
                if divisor == 0:
                    raise ValueError("division by zero")
                value /= divisor
        return value

    def unary(self) -> Fraction:
        if self.peek() == "-":
            self.take()
            return -self.unary()
        return self.power()

    def power(self) -> Fraction:
        base = self.atom()
        if self.peek() == "^":
            self.take()
            exponent = self.unary()
            size = base.numerator.bit_length() + base.denominator.bit_length()
            if exponent.denominator != 1 or abs(exponent) * size > MAX_POWER_BITS:
                raise ValueError(f"{base}^{exponent}: not an integer power of a feasible size")
            if base == 0 and exponent < 0:
                raise ValueError("zero to a negative power")
            return base**exponent
        return base

    def atom(self) -> Fraction:
        token = self.take()
        if token == "(":
            value = self.sum()
            if self.take() != ")":
                raise ValueError("unbalanced parenthesis")
            return value
        if token in OPERATORS or token == ")":
            raise ValueError(f"operand expected, got {token!r}")
        return Fraction(token.replace(",", ""))


def evaluate(expression: str) -> Fraction:
    """The exact value of an arithmetic expression; ``ValueError`` when it does not parse."""
    return _Parser(expression).parse()


def _decimal_places(side: str) -> int | None:
    match = re.fullmatch(r"\s*-?\d[\d,]*\.(\d+)\s*|\s*-?\.(\d+)\s*", side)
    return len(match.group(1) or match.group(2)) if match else None


def _rounds(exact: Fraction, literal: Fraction, side: str) -> bool:
    """Whether ``side``, a decimal literal of ``d`` places worth ``literal``, is ``exact``
    rounded (half a unit at most) or truncated to ``d`` places."""
    places = _decimal_places(side)
    if places is None:
        return False
    unit = Fraction(1, 10**places)
    truncated = Fraction(int(exact / unit)) * unit  # int() truncates towards zero
    return abs(exact - literal) <= unit / 2 or literal == truncated


def _sides_agree(first: Fraction, second: Fraction, first_side: str, second_side: str) -> bool:
    """Equal, or one side is a decimal literal that rounds or truncates the other."""
    return (
        first == second or _rounds(first, second, second_side) or _rounds(second, first, first_side)
    )


def _attached(character: str) -> bool:
    return bool(character) and (character.isalnum() or character in "_\\{}")


def _continues(side: str, previous: Fraction) -> bool:
    """Whether ``side`` starts with the number ``previous`` and goes on from it (``6 + 1``
    after a side worth 6): the running-total notation ``2 * 3 = 6 + 1 = 7``."""
    match = re.match(rf"\s*({NUMBER})\s*[-+*/^]", side)
    return bool(match) and Fraction(match.group(1).replace(",", "")) == previous


def _chain_right(sides: list[str], values: list[Fraction]) -> bool:
    """Every side equals the one before it (as :func:`_sides_agree` allows), or starts a
    running total from it."""
    return all(
        _sides_agree(values[i - 1], values[i], sides[i - 1], sides[i])
        or _continues(sides[i], values[i - 1])
        for i in range(1, len(values))
    )


def _is_statement(run: str, before: str, after: str) -> bool:
    """Whether a run is arithmetic: an ``=`` and an operator, both ends numbers or parentheses,
    and no letter or brace touching it (``x = 5``, ``2x + 1 = 7``, ``a_1 + 2 = 3``)."""
    stripped = run.strip()
    if "=" not in stripped or not OPERATORS & set(stripped.replace("=", "")):
        return False
    if (not run[0].isspace() and _attached(before)) or (not run[-1].isspace() and _attached(after)):
        return False
    return stripped[0] not in "+*/^=)" and stripped[-1] not in "+-*/^=("


def _balanced_sides(sides: list[str]) -> list[str]:
    """The sides of a run without what belongs to the text around it: a first side that closes
    a parenthesis it did not open (the argument of ``f(1) = ...``, a label ``2) ...``) is
    dropped, and closing parentheses that end a remark are cut off the last side."""
    if sides and sides[0].count(")") > sides[0].count("("):
        sides = sides[1:]
    if sides:
        last = sides[-1].rstrip()
        while last.endswith(")") and last.count(")") > last.count("("):
            last = last[:-1].rstrip()
        sides = [*sides[:-1], last]
    return sides if all(side.strip() for side in sides) else []


def normalise(text: str) -> str:
    """LaTeX and Unicode arithmetic written as plain ``+ - * / ^``."""
    for pattern, replacement in LATEX:
        text = pattern.sub(replacement, text)
    return text


def statements(text: str) -> list[Statement]:
    """Every arithmetic statement of ``text``, checked (see the module docstring)."""
    text = normalise(text)
    found = []
    for match in RUN.finditer(text):
        run = match.group(0)
        before = text[match.start() - 1] if match.start() else ""
        previous = text[: match.start()].rstrip()[-1:]
        if re.match(r"-\s", run.strip()) and (_attached(previous) or previous == ")"):
            continue  # a binary minus after a variable, n - 1 = 4 (a sign is -3, not - 3)
        after = text[match.end()] if match.end() < len(text) else ""
        if not _is_statement(run, before, after):
            continue
        sides = _balanced_sides(run.strip().split("="))
        if len(sides) < 2 or not OPERATORS & set("".join(sides)):
            continue
        try:
            values = [evaluate(side) for side in sides]
        except (ValueError, ZeroDivisionError):
            found.append(Statement(run.strip(), parsed=False, right=False))
            continue
        found.append(Statement(run.strip(), parsed=True, right=_chain_right(sides, values)))
    return found


def arithmetic_fields(text: str) -> dict[str, float | int]:
    """Per generation: ``arithmetic_statements`` (candidates), ``arithmetic_unparsed``,
    ``arithmetic_wrong`` and ``arithmetic_error_share`` (wrong / parsed; NaN with none)."""
    found = statements(text)
    parsed = [s for s in found if s.parsed]
    wrong = sum(not s.right for s in parsed)
    return {
        "arithmetic_statements": len(found),
        "arithmetic_unparsed": len(found) - len(parsed),
        "arithmetic_wrong": wrong,
        "arithmetic_error_share": wrong / len(parsed) if parsed else float("nan"),
    }
