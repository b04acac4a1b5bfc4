"""The paper's sentence splitter, character spans in ``full_cot`` and token spans.

Two splitter variants exist (method reference §3.1):

- ``keep_last=True`` — the generation-time splitter that produced the dataset's ``chunks.json``
  (it keeps the trailing, unterminated remainder as a final chunk);
- ``keep_last=False`` — the current reference code, which drops that remainder. That is
  ``chunks[:-1]`` on 19 of the 20 real traces, not always: on 2236_correct the generation-time
  splitter merges a short final "Correct." backwards (tested). Every white-box stage uses this
  variant by default (``sentences.whitebox_variant: head``), for parity with the reference's
  matrices; white-box sentence ``i`` is dataset chunk ``i`` wherever both exist.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MIN_CHUNK_CHARS = 10
DATASET_MIN_CHUNK_CHARS = 4


class SentenceLocationError(ValueError):
    """A sentence could not be found in the text where it must be."""


def reasoning_text(text: str) -> str:
    """The text after the first ``<think>`` and before the first ``</think>``, stripped."""
    if "<think>" in text:
        text = text.split("<think>", 1)[1].strip()
    if "</think>" in text:
        text = text.split("</think>", 1)[0].strip()
    return text


def _merge_short_chunks(chunks: list[str]) -> list[str]:
    merged = list(chunks)
    index = 0
    while index < len(merged):
        if len(merged[index]) >= MIN_CHUNK_CHARS:
            index += 1
            continue
        if index == len(merged) - 1:
            if index == 0:
                break
            merged[index - 1] = merged[index - 1] + " " + merged[index]
            del merged[index]
        else:
            merged[index + 1] = merged[index] + " " + merged[index + 1]
            del merged[index]
    return merged


def split_solution(text: str, keep_last: bool = True) -> list[str]:
    """Split a reasoning trace into sentences exactly as the paper's splitter does.

    ``text`` may be a whole ``full_cot``: only the part between ``<think>`` and ``</think>``
    is split. ``keep_last=True`` is the generation-time variant (dataset chunks);
    ``keep_last=False`` is the current reference variant (drops the final remainder).
    """
    body = reasoning_text(text)
    chunks: list[str] = []
    current = ""
    last = len(body) - 1
    for position, character in enumerate(body):
        current += character
        paragraph_end = body[position : position + 2] == "\n\n" or (
            body[position : position + 4] == "\r\n\r\n"
        )
        sentence_end = position < last and character in ".?!" and body[position + 1] in (" ", "\n")
        if (paragraph_end or sentence_end) and current.strip():
            chunks.append(current.strip())
            current = ""
    if keep_last and current.strip():
        chunks.append(current.strip())
    return _merge_short_chunks(chunks)


def dataset_chunks(text: str) -> list[str]:
    """The chunks of ``chunks_labeled.json``: generation-time chunks of 4 or more characters."""
    return [chunk for chunk in split_solution(text) if len(chunk) >= DATASET_MIN_CHUNK_CHARS]


def char_spans(
    full_text: str, sentences: Sequence[str], start: int | None = None
) -> list[tuple[int, int]]:
    """Character spans ``[start, end)`` of ``sentences`` in ``full_text``, in order.

    Sentence ``k`` must begin at the first non-space character after sentence ``k - 1``
    (the first one right after ``<think>``, or at ``start``), and match the text ignoring
    whitespace (merged chunks are joined with one space where the text has a paragraph
    break). Each span ends just before the next non-space character after the sentence, so it
    includes the trailing whitespace and consecutive spans are contiguous, as in the reference.
    Raises :class:`SentenceLocationError` naming the first sentence that does not fit; nothing is
    skipped silently.
    """
    positions = [index for index, character in enumerate(full_text) if not character.isspace()]
    compact = "".join(full_text[index] for index in positions)
    if start is None:
        marker = full_text.find("<think>")
        start = marker + len("<think>") if marker >= 0 else 0
    rank = bisect.bisect_left(positions, start)
    spans: list[tuple[int, int]] = []
    for number, sentence in enumerate(sentences):
        sentence_compact = "".join(sentence.split())
        if not sentence_compact:
            raise SentenceLocationError(f"sentence {number} is empty")
        if compact[rank : rank + len(sentence_compact)] != sentence_compact:
            where = positions[rank] if rank < len(positions) else len(full_text)
            raise SentenceLocationError(
                f"sentence {number} is not at character {where}: expected {sentence[:60]!r}, "
                f"text has {full_text[where : where + 60]!r}"
            )
        begin = positions[rank]
        rank += len(sentence_compact)
        end = positions[rank] if rank < len(positions) else len(full_text)
        spans.append((begin, end))
    return spans


@dataclass
class TokenSpans:
    """Token spans of sentences in model-input coordinates (BOS is token 0).

    ``offsets`` — one tokenisation with offsets, each token assigned to the sentence holding its
    first non-space character (a leading-space token such as ``" Next"`` belongs to the sentence it
    starts); ``prefix`` — the reference's prefix re-tokenisation rule (§3.3).
    Shapes: ``[n_sentences, 2]`` half-open ``[start, end)``.
    """

    offsets: list[tuple[int, int]]
    prefix: list[tuple[int, int]]
    n_tokens: int
    disagreements: list[dict[str, Any]] = field(default_factory=list)


def offset_token_spans(
    offsets: Sequence[tuple[int, int]], text: str, spans: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Token spans from a tokenizer's ``offset_mapping`` of the whole text.

    ``offsets`` holds one ``(char_start, char_end)`` per token (special tokens ``(0, 0)``);
    ``spans`` are the sentences' character spans. Returns ``[n_sentences, 2]`` token spans.
    """
    starts = [begin for begin, _ in spans]
    ends = [end for _, end in spans]
    owner: list[int | None] = []
    for token_start, token_end in offsets:
        if token_end <= token_start:
            owner.append(None)
            continue
        anchor = token_start
        while anchor < token_end and text[anchor].isspace():
            anchor += 1
        if anchor == token_end:
            anchor = token_start
        owner.append(_sentence_at(anchor, starts, ends))
    token_spans: list[tuple[int, int]] = []
    for number in range(len(spans)):
        members = [index for index, sentence in enumerate(owner) if sentence == number]
        if not members:
            raise SentenceLocationError(f"sentence {number} owns no token")
        if members[-1] - members[0] + 1 != len(members):
            raise SentenceLocationError(f"tokens of sentence {number} are not contiguous")
        token_spans.append((members[0], members[-1] + 1))
    return token_spans


def _sentence_at(position: int, starts: list[int], ends: list[int]) -> int | None:
    index = bisect.bisect_right(starts, position) - 1
    if index >= 0 and position < ends[index]:
        return index
    return None


def prefix_token_spans(
    tokenizer: Any, text: str, spans: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Token spans by the reference's rule: ``len(encode(text[:char]))`` of growing prefixes of
    the original text (BOS counted). The reference replaces Unicode spaces only to locate the
    sentences; it tokenises the text as it is, and so does this. Shape ``[n_sentences, 2]``."""
    boundaries = sorted({position for span in spans for position in span if position > 0})
    prefixes = [text[:position] for position in boundaries]
    encoded = tokenizer(prefixes, add_special_tokens=True)["input_ids"] if prefixes else []
    length_at = {position: len(ids) for position, ids in zip(boundaries, encoded, strict=True)}
    length_at[0] = 0
    return [(length_at[begin], length_at[end]) for begin, end in spans]


MAX_RULE_DISAGREEMENT = 1


def check_rules_agree(
    by_offsets: Sequence[tuple[int, int]], by_prefix: Sequence[tuple[int, int]]
) -> None:
    """The two token-span rules may differ by one token at a boundary (a token such as
    ``" Next"`` starts the next sentence by offsets and ends the previous one by prefixes), never
    more: a larger gap means one rule tokenised other text, and indices would shift silently.
    Raises :class:`SentenceLocationError` naming the first sentence that differs more."""
    for number, (left, right) in enumerate(zip(by_offsets, by_prefix, strict=True)):
        if max(abs(left[0] - right[0]), abs(left[1] - right[1])) > MAX_RULE_DISAGREEMENT:
            raise SentenceLocationError(
                f"sentence {number}: token span {list(left)} by offsets and {list(right)} by "
                f"prefixes differ by more than {MAX_RULE_DISAGREEMENT} token"
            )


def token_spans(tokenizer: Any, text: str, spans: Sequence[tuple[int, int]]) -> TokenSpans:
    """Both token-span rules for ``spans`` in ``text`` and where they disagree (checked to be
    at most one token at any boundary)."""
    encoding = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
    by_offsets = offset_token_spans(encoding["offset_mapping"], text, spans)
    by_prefix = prefix_token_spans(tokenizer, text, spans)
    check_rules_agree(by_offsets, by_prefix)
    disagreements = [
        {"sentence": number, "offsets": list(left), "prefix": list(right)}
        for number, (left, right) in enumerate(zip(by_offsets, by_prefix, strict=True))
        if tuple(left) != tuple(right)
    ]
    return TokenSpans(
        offsets=by_offsets,
        prefix=by_prefix,
        n_tokens=len(encoding["input_ids"]),
        disagreements=disagreements,
    )


def sentence_record(full_cot: str, variant: str) -> dict[str, Any]:
    """Sentences of a trace with their character spans and boundary report.

    ``variant`` is ``head`` (drop the final remainder, the white-box default) or ``generation``.
    Sentence ``i`` is chunk ``i`` of the generation-time split in both variants.
    """
    if variant not in ("head", "generation"):
        raise ValueError(f"variant must be 'head' or 'generation', not {variant!r}")
    sentences = split_solution(full_cot, keep_last=variant == "generation")
    spans = char_spans(full_cot, sentences)
    reasoning_end = full_cot.find("</think>")
    covered_end = spans[-1][1] if spans else 0
    uncovered = full_cot[covered_end : reasoning_end if reasoning_end >= 0 else len(full_cot)]
    return {
        "variant": variant,
        "sentences": sentences,
        "char_spans": [list(span) for span in spans],
        "chunk_idx": list(range(len(sentences))),
        "report": {
            "n_sentences": len(sentences),
            "n_unlocated": 0,
            "trailing_separator": {
                "space": sum(
                    full_cot[a:b].endswith(" ") and "\n" not in full_cot[a:b][-2:] for a, b in spans
                ),
                "newline": sum(full_cot[a:b].endswith("\n") for a, b in spans),
            },
            "uncovered_reasoning_chars": len(uncovered.strip()),
        },
    }
