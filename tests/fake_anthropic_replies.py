"""The fake Anthropic API's replies (:mod:`fake_anthropic`): its state, the labels it answers
with for a request and the faults it injects, and the JSON it sends."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Fault = Callable[[int, int, int], str | None]
TARGETS_MARKER = "[CHUNKS TO LABEL]"


CHUNK_NUMBER = re.compile(r"^Chunk (\d+):\n", re.MULTILINE)


RETRY_AFTER_S = "0.02"


@dataclass
class CatalogTrace:
    """What the fake knows of one trace: problem text, chunk texts and the labels to return."""

    problem: str
    texts: dict[int, str]
    labels: dict[int, dict[str, Any]]


@dataclass
class Batch:
    id: str
    requests: list[dict[str, Any]]
    polls: int = 0
    created_at: float = field(default_factory=time.time)


@dataclass
class FakeState:
    catalog: list[CatalogTrace]
    fault: Fault = lambda trace, seen, n_targets: None  # noqa: E731
    polls_to_end: int = 1
    batch_errors: set[str] = field(default_factory=set)
    counts: Counter = field(default_factory=Counter)
    seen: Counter = field(default_factory=Counter)
    batches: dict[str, Batch] = field(default_factory=dict)
    cached_prefixes: set[str] = field(default_factory=set)
    drip_pause_s: float = 0.2
    results_drops: int = 0
    duplicated_results: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


def first_user_text(body: Mapping[str, Any]) -> str:
    content = body["messages"][0]["content"]
    return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)


def target_numbers(text: str) -> list[int]:
    return [int(number) for number in CHUNK_NUMBER.findall(text.split(TARGETS_MARKER, 1)[1])]


def find_trace(state: FakeState, text: str, targets: Sequence[int]) -> int | None:
    """Catalogue position of the one trace whose problem and numbered chunks are all in ``text``."""
    numbered = [int(number) for number in CHUNK_NUMBER.findall(text)]
    matches = [
        position
        for position, trace in enumerate(state.catalog)
        if trace.problem in text
        and all(f"Chunk {i}:\n{trace.texts.get(i)}\n\n" in text for i in targets)
        and all(f"Chunk {n}:\n{trace.texts.get(n)}\n\n" in text for n in numbered)
    ]
    return matches[0] if len(matches) == 1 else None


def _usage(state: FakeState, body: Mapping[str, Any], output: Any) -> dict[str, int]:
    system = json.dumps(body.get("system", "")) + json.dumps(body.get("tools", []))
    cached = len(system) // 4
    rest = len(json.dumps(body["messages"])) // 4
    with state.lock:
        hit = system in state.cached_prefixes
        state.cached_prefixes.add(system)
    return {
        "input_tokens": rest,
        "output_tokens": len(json.dumps(output)) // 4,
        "cache_creation_input_tokens": 0 if hit else cached,
        "cache_read_input_tokens": cached if hit else 0,
    }


# A valid label that no catalogued chunk has: taken silently, it is a mislabel.
WRONG_ENTRY = {"function_tags": ["uncertainty_management", "self_checking"], "depends_on": []}


def answer(state: FakeState, body: Mapping[str, Any], fault: str | None) -> tuple[int, dict]:
    """The status and JSON of a messages request, with content faults applied."""
    text = first_user_text(body)
    targets = target_numbers(text)
    position = find_trace(state, text, targets) if targets else None
    if position is None:
        error = {"type": "invalid_request_error", "message": "chunks match no catalogued trace"}
        return 400, {"type": "error", "error": error}
    trace = state.catalog[position]
    labels = {str(i): json.loads(json.dumps(trace.labels[i])) for i in targets}
    stop_reason = "tool_use"
    if fault == "missing":
        labels.pop(str(targets[-1]))
    elif fault == "unknown_tag":
        labels[str(targets[0])]["function_tags"] = ["brainstorming"]
    elif fault == "forward":
        labels[str(targets[0])]["depends_on"] = [targets[0] + 1]
    elif fault == "shifted":
        labels = {str(i + 1): labels[str(i)] for i in targets}
    elif fault == "max_tokens":
        labels = dict(list(labels.items())[: len(labels) // 2])
        stop_reason = "max_tokens"
    elif fault == "zero_padded":
        labels[f"0{targets[0]}"] = WRONG_ENTRY
    elif fault == "float_deps":
        for entry in labels.values():
            entry["depends_on"] = [float(dep) for dep in entry["depends_on"]]
    elif fault == "duplicate_key":
        labels[DUPLICATE_PLACEHOLDER] = {
            "function_tags": ["uncertainty_management"],
            "depends_on": [],
        }
    tool = body["tool_choice"]["name"]
    content: list[dict[str, Any]] = [
        {"type": "tool_use", "id": f"toolu_{len(targets)}", "name": tool, "input": labels}
    ]
    if fault == "conflicting_tools":  # a valid but wrong call first, the right one second
        wrong = {key: WRONG_ENTRY for key in labels}
        content.insert(0, {"type": "tool_use", "id": "toolu_first", "name": tool, "input": wrong})
    if fault == "malformed":
        content = [{"type": "text", "text": '{"' + str(targets[0]) + '": {"function_tags": ['}]
        stop_reason = "end_turn"
    message = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": _usage(state, body, labels),
    }
    return 200, message


DUPLICATE_PLACEHOLDER = "__repeat_first_target__"


def encode_message(message: Mapping[str, Any]) -> bytes:
    """The JSON body of a message; a ``duplicate_key`` placeholder becomes the first target's
    key, repeated after the real entry (so a parser that keeps the last value mislabels)."""
    text = json.dumps(message)
    if DUPLICATE_PLACEHOLDER in text:
        first = next(key for key in message["content"][0]["input"] if key != DUPLICATE_PLACEHOLDER)
        text = text.replace(f'"{DUPLICATE_PLACEHOLDER}"', f'"{first}"')
    return text.encode()
