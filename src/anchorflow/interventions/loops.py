"""Sentence-level loops in generated text (failure modes of amplified heads).

A generation's sentences are the paper's splitter's (:func:`anchorflow.sentences.split_solution`),
each *normalised*: lower case, every number replaced by ``#``, runs of whitespace made one space,
punctuation at either end removed. Sentences of fewer than :data:`MIN_SENTENCE_CHARS`
normalised characters never count.

- **Sentence loop:** one normalised sentence occurs at least ``r`` times.
- **Backtracking loop:** at least ``r`` backtracking sentences (opening with one of
  :data:`BACKTRACK_OPENERS`: "Wait", "Let me check", ...) with no new result between them; a
  *new result* is a number that no earlier sentence of the generation wrote, and it resets the
  count (also when the backtracking sentence itself writes it).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from anchorflow.sentences import split_solution

MIN_SENTENCE_CHARS = 8
BACKTRACK_OPENERS = (
    "wait",
    "hmm",
    "hold on",
    "but wait",
    "actually",
    "let me check",
    "let me verify",
    "let me double-check",
    "let me double check",
    "let me re",
    "let me make sure",
    "let me see",
    "no,",
)
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def normalise_sentence(sentence: str) -> str:
    """Lower case, numbers as ``#``, one space between words, no punctuation at the ends."""
    text = NUMBER.sub("#", sentence.lower())
    return re.sub(r"\s+", " ", text).strip(" \t\n.,;:!?\"'()[]")


def sentences_of(text: str) -> list[str]:
    """The generation's sentences by the paper's splitter (the last, unfinished one kept),
    inside and after a thinking block alike."""
    text = text.replace("<think>", "\n\n").replace("</think>", "\n\n")
    return split_solution(text, keep_last=True) if text.strip() else []


def sentence_loop(sentences: Sequence[str], min_repeats: int) -> bool:
    """Whether one normalised sentence occurs at least ``min_repeats`` times."""
    counts = Counter(
        norm for norm in map(normalise_sentence, sentences) if len(norm) >= MIN_SENTENCE_CHARS
    )
    return bool(counts) and max(counts.values()) >= min_repeats


def is_backtracking(sentence: str) -> bool:
    """Whether a sentence opens with a backtracking phrase."""
    norm = normalise_sentence(sentence)
    return any(norm.startswith(opener) for opener in BACKTRACK_OPENERS)


def backtracking_loop(sentences: Sequence[str], min_repeats: int) -> bool:
    """Whether ``min_repeats`` backtracking sentences follow one another with no new result."""
    seen: set[str] = set()
    count = 0
    for sentence in sentences:
        numbers = {number.replace(",", "") for number in NUMBER.findall(sentence)}
        new = numbers - seen
        seen |= numbers
        if new:
            count = 0
        elif is_backtracking(sentence):
            count += 1
            if count >= min_repeats:
                return True
    return False
