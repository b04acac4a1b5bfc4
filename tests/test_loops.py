"""Sentence-level and backtracking loops on hand-made texts."""

from __future__ import annotations

import pytest

from anchorflow.interventions.loops import (
    backtracking_loop,
    is_backtracking,
    normalise_sentence,
    sentence_loop,
    sentences_of,
)


def test_normalisation_ignores_numbers_case_spaces_and_end_punctuation():
    assert normalise_sentence("  So 12 + 3 = 15.  ") == normalise_sentence("so 4 + 5 = 9!")
    assert normalise_sentence("Total:   1,000 items") == "total: # items"


@pytest.mark.parametrize(
    ("text", "looped"),
    [
        ("So 3 + 4 = 7. So 4 + 5 = 9. So 5 + 6 = 11.", True),  # numbers normalised
        ("So 3 + 4 = 7. So 4 + 5 = 9. Then 5 + 6 = 11.", False),  # twice only
        ("Ok. Ok. Ok. Ok.", False),  # too short to count
        ("I add the marbles. I add the marbles.\n\nI add the marbles", True),  # last unfinished
    ],
)
def test_sentence_loop(text, looped):
    assert sentence_loop(sentences_of(text), 3) == looped


@pytest.mark.parametrize(
    ("text", "looped"),
    [
        ("Wait, is that right? Let me check again. Hmm, not sure. Wait, maybe.", True),
        ("Wait, is that right? Let me check: 3 + 4 = 7. Hmm, not sure. Wait, maybe.", False),
        ("The sum is 7. Wait, the sum is 7. Let me check, 7. Hmm, 7 again.", True),  # 7 is not new
        ("Wait, is that right? The answer follows. Let me verify. Hmm, fine.", True),
        ("Wait, is that right? Let me check again.", False),
    ],
)
def test_backtracking_loop_needs_no_new_result_between(text, looped):
    assert backtracking_loop(sentences_of(text), 3) == looped


def test_backtracking_openers():
    assert is_backtracking("Wait, that is wrong.") and is_backtracking("Let me re-check this.")
    assert not is_backtracking("We wait for the bus.") and not is_backtracking("So the sum is 7.")


def test_sentences_after_the_thinking_block_count_too():
    text = "<think>So 3 + 4 = 7.</think> So 4 + 5 = 9. So 5 + 6 = 11."
    assert len(sentences_of(text)) == 3 and sentence_loop(sentences_of(text), 3)
