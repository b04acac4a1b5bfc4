"""Triggers of dynamic interventions: a head op applied only for the ``n_steps`` decode steps
after the generated text completes one of a set of strings (docs/METHODS.md "Attention
interventions", dynamic amplification).

The strings are configured (``"Wait"``, ``"Let me check"``) or read from the dataset: the most
frequent openings of the sentences the dataset labels with a category.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

TAIL_TOKENS = 24


@dataclass(frozen=True)
class Trigger:
    """Switch the head op on for the ``n_steps`` forward passes after any of ``strings``
    appears in the generated text (a new occurrence re-arms the count)."""

    strings: tuple[str, ...]
    n_steps: int

    def __post_init__(self) -> None:
        if not self.strings or any(not text for text in self.strings):
            raise ValueError(f"a trigger needs non-empty strings, got {self.strings!r}")
        if self.n_steps < 1:
            raise ValueError(f"a trigger's n_steps must be at least 1, got {self.n_steps}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "strings": list(self.strings)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trigger:
        return cls(tuple(data["strings"]), int(data["n_steps"]))


def completes_trigger(before: str, after: str, strings: Sequence[str]) -> bool:
    """Whether appending a token turned the text ``before`` into ``after`` so that one of the
    ``strings`` ends inside the new characters (an occurrence already in ``before`` does not
    count)."""
    return any(
        (found := after.rfind(text)) >= 0 and found + len(text) > len(before) for text in strings
    )


def token_fires(tokenizer: Any, tokens: Sequence[int], strings: Sequence[str]) -> bool:
    """Whether the last of the generated ``tokens`` completes a trigger string (the tail of
    :data:`TAIL_TOKENS` tokens is decoded, special tokens kept)."""
    tail = list(tokens[-TAIL_TOKENS:])
    before = tokenizer.decode(tail[:-1], skip_special_tokens=False)
    after = tokenizer.decode(tail, skip_special_tokens=False)
    return completes_trigger(before, after, strings)


def category_openings(
    labelled_sentences: Iterable[tuple[str, Sequence[str]]],
    category: str,
    n_words: int,
    top: int,
) -> tuple[str, ...]:
    """The ``top`` most frequent first-``n_words`` openings of the sentences tagged
    ``category``, from ``(sentence, function_tags)`` pairs (ties in first-seen order).

    Raises when no sentence carries the category."""
    counts: Counter[str] = Counter()
    for sentence, tags in labelled_sentences:
        words = sentence.split()
        if category in tags and words:
            counts[" ".join(words[:n_words])] += 1
    if not counts:
        raise ValueError(f"no labelled sentence has the category {category!r}")
    return tuple(text for text, _ in counts.most_common(top))


def record_sentences(records: Iterable[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """``(sentence, function_tags)`` of every labelled chunk of the records."""
    return [
        (label.get("chunk", ""), list(label.get("function_tags", [])))
        for record in records
        for label in record.get("labels", [])
    ]
