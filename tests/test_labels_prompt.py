"""Prompt, windows, cache keys and response validation of the labelling stage."""

from __future__ import annotations

import json

import pytest

from anchorflow.labels import prompt
from anchorflow.labels.prompt import (
    INSTRUCTIONS,
    PROMPT_VERSION,
    TOOL_NAME,
    Window,
    build_request,
    cache_key,
    make_windows,
    split_window,
    user_text,
    validate_response,
)
from anchorflow.taxonomy import TAGS

CHUNKS = [(i, f"sentence number {i}.") for i in range(0, 23) if i != 5]  # chunk 5 filtered out


def tool_message(payload, stop_reason="tool_use"):
    block = {"type": "tool_use", "id": "t1", "name": TOOL_NAME, "input": payload}
    return {"content": [block], "stop_reason": stop_reason}


def entry(tags=("active_computation",), deps=()):
    return {"function_tags": list(tags), "depends_on": list(deps)}


def test_prompt_names_every_tag_and_version_hashes_the_text(monkeypatch):
    assert all(f"`{tag}`" in INSTRUCTIONS for tag in TAGS)
    assert PROMPT_VERSION.startswith(prompt.PROMPT_HUMAN_VERSION + "-")
    monkeypatch.setattr(prompt, "INSTRUCTIONS", INSTRUCTIONS + " ")
    assert prompt._prompt_version() != PROMPT_VERSION


@pytest.mark.parametrize(("size", "context"), [(5, None), (7, 3), (22, 0), (100, None)])
def test_windows_partition_chunks_and_carry_context(size, context):
    windows = make_windows(CHUNKS, size, context)
    assert [c for w in windows for c in w.targets] == CHUNKS
    assert max(len(w.targets) for w in windows) <= size
    assert max(len(w.targets) for w in windows) - min(len(w.targets) for w in windows) <= 1
    for window in windows:
        earlier = [c for c in CHUNKS if c[0] < window.indices[0]]
        expected = (
            earlier if context is None else earlier[len(earlier) - context :] if context else []
        )
        assert list(window.context) == expected


def test_split_window_moves_first_half_into_context():
    window = make_windows(CHUNKS, 100, None)[0]
    first, second = split_window(window, None)
    assert first.targets + second.targets == window.targets
    assert second.context == first.targets
    assert split_window(window, 2)[1].context == first.targets[-2:]


def test_user_text_numbers_chunks_by_chunk_idx():
    window = make_windows(CHUNKS, 8, 2)[1]
    text = user_text("What is 1+1?", window)
    assert "[PROBLEM]\nWhat is 1+1?" in text
    context, targets = text.split("[CHUNKS TO LABEL]")
    assert "Chunk 7:\nsentence number 7.\n" in context and "Chunk 6:" in context
    assert "Chunk 4:" not in text and "Chunk 5:" not in text
    assert targets.count("Chunk ") == len(window.targets)
    assert f"from {window.indices[0]} to {window.indices[-1]}" in targets


def test_request_caches_instruction_prefix_and_forces_the_tool():
    window = make_windows(CHUNKS, 100, None)[0]
    request = build_request("p", window, "claude-x", 1000, None)
    assert request["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert request["tool_choice"] == {
        "type": "tool",
        "name": TOOL_NAME,
        "disable_parallel_tool_use": True,
    }
    assert "temperature" not in request and "extra_body" not in request
    assert build_request("p", window, "claude-x", 1000, 0.0)["extra_body"] == {"temperature": 0.0}
    schema = request["tools"][0]["input_schema"]["additionalProperties"]
    assert schema["required"] == ["function_tags", "depends_on"]
    assert schema["properties"]["function_tags"]["items"]["enum"] == list(TAGS)


def test_cache_key_depends_on_model_problem_chunks_and_context():
    window = Window(((3, "a"), (4, "b")), ((0, "z"),))
    key = cache_key("m", None, "p", window)
    assert key == cache_key("m", None, "p", Window(((3, "a"), (4, "b")), ((0, "z"),)))
    others = [
        cache_key("m2", None, "p", window),
        cache_key("m", 0.0, "p", window),
        cache_key("m", None, "p2", window),
        cache_key("m", None, "p", Window(((3, "a"), (4, "c")), ((0, "z"),))),
        cache_key("m", None, "p", Window(((3, "a"), (5, "b")), ((0, "z"),))),
        cache_key("m", None, "p", Window(((3, "a"), (4, "b")), ())),
    ]
    assert len({key, *others}) == 7


WINDOW = Window(((3, "a"), (4, "b"), (6, "c")), ((0, "z"), (1, "y")))
GOOD = {
    "3": entry(deps=[0]),
    "4": entry(("plan_generation", "self_checking"), [3, 1]),
    "6": entry(),
}


def test_valid_response_sorted_dependencies():
    parsed = validate_response(tool_message(GOOD), WINDOW)
    assert parsed.valid
    assert parsed.labels[4] == {
        "function_tags": ["plan_generation", "self_checking"],
        "depends_on": [1, 3],
    }


@pytest.mark.parametrize(
    ("payload", "bad"),
    [
        ({k: v for k, v in GOOD.items() if k != "6"}, {6}),
        ({**GOOD, "4": entry(("brainstorming",))}, {4}),
        ({**GOOD, "4": entry(())}, {4}),
        ({**GOOD, "4": entry(deps=[4])}, {4}),
        ({**GOOD, "4": entry(deps=[6])}, {4}),
        ({**GOOD, "4": entry(deps=[2])}, {4}),  # chunk 2 was not shown
        ({**GOOD, "4": {"function_tags": ["unknown"]}}, {4}),
        ({**GOOD, "4": entry(deps=["3"])}, {4}),
        ({**GOOD, "7": entry()}, {-1}),
        ({"4": GOOD["3"], "6": GOOD["4"], "7": GOOD["6"]}, {-1, 3}),  # shifted by one
    ],
)
def test_invalid_responses_name_the_affected_chunks(payload, bad):
    parsed = validate_response(tool_message(payload), WINDOW)
    assert not parsed.valid and set(parsed.problems) == bad
    assert set(parsed.labels) == set(WINDOW.indices) - bad


def test_malformed_and_truncated_responses():
    text = {"content": [{"type": "text", "text": '{"3": {'}], "stop_reason": "end_turn"}
    parsed = validate_response(text, WINDOW)
    assert set(parsed.problems) == {-1, 3, 4, 6} and not parsed.labels
    unknown = {"function_tags": ["unknown"], "depends_on": []}
    reply = json.dumps({str(index): unknown for index in WINDOW.indices})
    as_text = {"content": [{"type": "text", "text": reply}]}
    assert validate_response(as_text, WINDOW).valid
    truncated = validate_response(tool_message(GOOD, "max_tokens"), WINDOW)
    assert truncated.truncated and not truncated.valid
    assert not validate_response(tool_message(["x"]), WINDOW).valid


def test_repeated_keys_in_text_json_are_never_resolved_silently():
    """JSON text (no tool call) with chunk 4 given twice, the wrong entry last: the plain
    ``json.loads`` rule (last value wins) would mislabel chunk 4; the response is invalid."""
    good = json.dumps(GOOD)
    wrong = json.dumps(entry(("self_checking",)))
    text = good[:-1] + f', "4": {wrong}}}'
    assert json.loads(text)["4"]["function_tags"] == ["self_checking"]
    parsed = validate_response({"content": [{"type": "text", "text": text}]}, WINDOW)
    assert not parsed.valid and 4 in parsed.problems and -1 in parsed.problems
    assert 4 not in parsed.labels
