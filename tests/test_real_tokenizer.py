"""Token spans with the real DeepSeek-R1-Distill-Qwen tokenizer on the 20 real traces.

The offset rule (one tokenisation with offsets) must give every token to at most one sentence
and cover every sentence's characters. Where it differs from the reference's prefix
re-tokenisation rule, it differs by exactly one token, and only at boundaries after a sentence
that ends with a single space: ``encode(text[:end])`` ends with a lone ``" "`` token that the
whole text merges into the next sentence's first word. The counts are recorded below and in
``docs/REAL_SAMPLE.md``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from real_data import (
    PAPER_PROBLEMS,
    REAL_TOKENIZERS,
    real_trace_folders,
)

from anchorflow.sentences import sentence_record, token_spans

# trace -> (sentence boundaries = n_sentences + 1, boundaries where the two rules differ)
BOUNDARY_DISAGREEMENTS = {
    "330_correct": (139, 22),
    "330_incorrect": (231, 63),
    "1591_correct": (160, 45),
    "1591_incorrect": (162, 29),
    "2189_correct": (114, 63),
    "2189_incorrect": (60, 46),
    "2236_correct": (87, 53),
    "2236_incorrect": (92, 39),
    "2238_correct": (60, 37),
    "2238_incorrect": (104, 67),
    "3448_correct": (76, 49),
    "3448_incorrect": (134, 44),
    "4164_correct": (251, 42),
    "4164_incorrect": (117, 55),
    "4682_correct": (145, 54),
    "4682_incorrect": (208, 106),
    "6596_correct": (233, 141),
    "6596_incorrect": (175, 121),
    "6998_correct": (125, 54),
    "6998_incorrect": (212, 21),
}


def trace_name(folder: Path) -> str:
    """``.../correct_base_solution/problem_4682`` -> ``4682_correct``."""
    correctness = folder.parent.name.removesuffix("_base_solution")
    return f"{folder.name.removeprefix('problem_')}_{correctness}"


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(REAL_TOKENIZERS / "deepseek-r1-distill-qwen")


def boundaries(spans: list[tuple[int, int]]) -> np.ndarray:
    """Boundary positions of contiguous spans: the first start, then every end. ``[n + 1]``."""
    return np.array([spans[0][0]] + [end for _, end in spans])


def test_the_recorded_counts_cover_the_twenty_paper_traces() -> None:
    traces = {trace_name(folder) for folder in real_trace_folders()}
    expected = {f"{p}_{c}" for p in PAPER_PROBLEMS for c in ("correct", "incorrect")}
    assert traces == expected == set(BOUNDARY_DISAGREEMENTS)


@pytest.mark.parametrize("folder", real_trace_folders(), ids=trace_name)
def test_offset_rule_on_a_real_trace(tokenizer: Any, folder: Path) -> None:
    full_cot = json.loads((folder / "base_solution.json").read_text())["full_cot"]
    char_spans = [tuple(span) for span in sentence_record(full_cot, "head")["char_spans"]]
    result = token_spans(tokenizer, full_cot, char_spans)
    offsets = tokenizer(full_cot, return_offsets_mapping=True)["offset_mapping"]
    assert len(offsets) == result.n_tokens

    owner = np.full(result.n_tokens, -1)
    for sentence, (start, end) in enumerate(result.offsets):
        assert start < end, f"sentence {sentence} has no token"
        assert (owner[start:end] == -1).all(), f"sentence {sentence} shares a token"
        owner[start:end] = sentence
    assert (np.diff(boundaries(result.offsets)) > 0).all()

    for sentence, ((char_start, char_end), (start, end)) in enumerate(
        zip(char_spans, result.offsets, strict=True)
    ):
        covered = np.zeros(len(full_cot), dtype=bool)
        for token_start, token_end in offsets[start:end]:
            covered[token_start:token_end] = True
        visible = [c for c in range(char_start, char_end) if not full_cot[c].isspace()]
        assert covered[visible].all(), f"sentence {sentence} has characters outside its tokens"
        foreign = [
            c for c in np.flatnonzero(covered) if not full_cot[c].isspace()
            and not char_start <= c < char_end
        ]  # fmt: skip
        assert not foreign, f"tokens of sentence {sentence} cover another sentence's text"

    by_offsets, by_prefix = boundaries(result.offsets), boundaries(result.prefix)
    differ = np.flatnonzero(by_offsets != by_prefix)
    assert (by_prefix[differ] - by_offsets[differ] == 1).all()
    assert 0 not in differ, "the first sentence's start must not differ"
    separators = [full_cot[char_spans[k - 1][0] : char_spans[k - 1][1]] for k in differ]
    assert all(text.endswith(" ") and not text[:-1][-1:].isspace() for text in separators)
    assert (len(by_offsets), len(differ)) == BOUNDARY_DISAGREEMENTS[trace_name(folder)]
