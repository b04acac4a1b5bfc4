"""The labelling prompt, its tool definition, windows of long traces, and response validation.

``PROMPT_VERSION`` = human version + a hash of every text and schema the model sees, so any
prompt change changes the response-cache key. Chunks are always named by their ``chunk_idx``
(index into the record's ``chunks``), never by their position in a window, so a response can
only be attached to the chunk it names.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from anchorflow.labels.client import DUPLICATE_KEYS, loads_marking_duplicates
from anchorflow.taxonomy import TAG_DEFINITIONS, TAGS

PROMPT_HUMAN_VERSION = "v1"
TOOL_NAME = "record_chunk_labels"

_TAG_LINES = "\n".join(
    f"{number}. `{tag}`: {text}" for number, (tag, text) in enumerate(TAG_DEFINITIONS.items(), 1)
)

INSTRUCTIONS = f"""You study how language models reason when they solve competition math problems.
You will see one math problem and the model's chain of thought, cut into numbered chunks
(roughly one sentence each). Your job is to annotate every chunk you are asked to label.

For each chunk give:
1. `function_tags`: one or more tags from the list below saying what the chunk does in the
   reasoning. Put the tag that fits best first; add more only when the chunk clearly does two
   things.
2. `depends_on`: the numbers of EARLIER chunks whose results, facts or ideas this chunk
   directly uses. Leave it empty when the chunk builds on nothing earlier.

Tags:
{_TAG_LINES}

How to find dependencies:
- A chunk depends on an earlier chunk when it uses a value, equation, fact or plan that the
  earlier chunk produced or stated, or when it checks, corrects or abandons that chunk.
- Look at the whole earlier trace, not only the previous chunk: a final answer often depends
  on a result computed long before, and a check depends on the step it checks.
- Be precise and conservative: list the chunks that are actually used, not every chunk on
  the same topic. Still list all of them when a chunk combines several results.
- Only numbers of earlier chunks are allowed: never the chunk itself or a later one.

Examples:
- Chunk 7 "So 16^4 = 65536." uses the plan of chunk 5 to compute powers of 16:
  `{{"function_tags": ["active_computation"], "depends_on": [5]}}`.
- Chunk 12 "Wait, let me double-check that multiplication." re-examines chunk 11:
  `{{"function_tags": ["self_checking"], "depends_on": [11]}}`.
- Chunk 20 "So the answer is \\boxed{{19}}." states the result reached in chunks 17 and 18:
  `{{"function_tags": ["final_answer_emission"], "depends_on": [17, 18]}}`.

Some chunks may be shown as context only (marked as such): read them, use their numbers in
`depends_on` when needed, but do not label them.

Answer by calling the `{TOOL_NAME}` tool exactly once, with one entry per chunk to label,
keyed by the chunk number written as a string, for example
`{{"14": {{"function_tags": ["plan_generation"], "depends_on": [3]}}, "15": ...}}`.
Every chunk to label needs an entry; add no other keys."""

USER_TEMPLATE = """[PROBLEM]
{problem}

{context_block}[CHUNKS TO LABEL]
{chunks}
Label every chunk from {first} to {last} ({count} chunks) by calling {tool}."""

CONTEXT_TEMPLATE = """[CONTEXT ONLY: earlier chunks, do not label]
{chunks}
"""

CHUNK_TEMPLATE = "Chunk {index}:\n{text}\n\n"

ENTRY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "function_tags": {
            "type": "array",
            "items": {"type": "string", "enum": list(TAGS)},
            "minItems": 1,
            "uniqueItems": True,
        },
        "depends_on": {
            "type": "array",
            "items": {"type": "integer", "minimum": 0},
            "uniqueItems": True,
        },
    },
    "required": ["function_tags", "depends_on"],
    "additionalProperties": False,
}

TOOL: dict[str, Any] = {
    "name": TOOL_NAME,
    "description": (
        "Record the function tags and dependencies of every chunk to label, keyed by chunk number."
    ),
    "input_schema": {
        "type": "object",
        "propertyNames": {"pattern": "^[0-9]+$"},
        "additionalProperties": ENTRY_SCHEMA,
    },
}

_ENTRY_VALIDATOR = Draft202012Validator(ENTRY_SCHEMA)


def _prompt_version() -> str:
    material = json.dumps(
        [INSTRUCTIONS, USER_TEMPLATE, CONTEXT_TEMPLATE, CHUNK_TEMPLATE, TOOL],
        sort_keys=True,
        ensure_ascii=False,
    )
    return f"{PROMPT_HUMAN_VERSION}-{hashlib.sha256(material.encode('utf-8')).hexdigest()[:12]}"


PROMPT_VERSION = _prompt_version()


@dataclass(frozen=True)
class Window:
    """Chunks labelled by one request (``targets``) and earlier chunks shown as ``context``.

    Both are ``(chunk_idx, text)`` pairs in trace order.
    """

    targets: tuple[tuple[int, str], ...]
    context: tuple[tuple[int, str], ...] = field(default=())

    @property
    def indices(self) -> list[int]:
        return [index for index, _ in self.targets]

    def allowed_dependencies(self) -> set[int]:
        return {index for index, _ in self.context} | set(self.indices)


def _context(earlier: Sequence[tuple[int, str]], context_chunks: int | None) -> tuple:
    if context_chunks is None:
        return tuple(earlier)
    return tuple(earlier[len(earlier) - context_chunks :]) if context_chunks else ()


def make_windows(
    chunks: Sequence[tuple[int, str]], window_chunks: int, context_chunks: int | None
) -> list[Window]:
    """Split ``(chunk_idx, text)`` pairs into near-equal windows of at most ``window_chunks``;
    each window shows the preceding ``context_chunks`` chunks (None = all) as context."""
    if not chunks:
        return []
    n_windows = -(-len(chunks) // window_chunks)
    bounds = [round(k * len(chunks) / n_windows) for k in range(n_windows + 1)]
    return [
        Window(tuple(chunks[start:stop]), _context(chunks[:start], context_chunks))
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def split_window(window: Window, context_chunks: int | None) -> list[Window]:
    """Halve a window (used when a response is cut off at ``max_tokens``)."""
    middle = len(window.targets) // 2
    first, second = window.targets[:middle], window.targets[middle:]
    earlier = window.context + first
    return [
        Window(first, window.context),
        Window(second, _context(earlier, context_chunks)),
    ]


def _render_chunks(chunks: Sequence[tuple[int, str]]) -> str:
    return "".join(CHUNK_TEMPLATE.format(index=index, text=text) for index, text in chunks)


def user_text(problem: str, window: Window) -> str:
    """The user message of a window: problem, context chunks, chunks to label."""
    context = (
        CONTEXT_TEMPLATE.format(chunks=_render_chunks(window.context)) if window.context else ""
    )
    return USER_TEMPLATE.format(
        problem=problem,
        context_block=context,
        chunks=_render_chunks(window.targets),
        first=window.indices[0],
        last=window.indices[-1],
        count=len(window.targets),
        tool=TOOL_NAME,
    )


def build_request(
    problem: str, window: Window, model: str, max_tokens: int, temperature: float | None
) -> dict[str, Any]:
    """Keyword arguments of ``messages.create`` for one window; the instruction prefix
    (tool + system text, identical for every request) carries a prompt-cache breakpoint.
    A temperature, when given, goes in ``extra_body`` (the SDK no longer has the argument)."""
    sampling = {} if temperature is None else {"extra_body": {"temperature": temperature}}
    return {
        **sampling,
        "model": model,
        "max_tokens": max_tokens,
        "system": [{"type": "text", "text": INSTRUCTIONS, "cache_control": {"type": "ephemeral"}}],
        "tools": [TOOL],
        "tool_choice": {"type": "tool", "name": TOOL_NAME, "disable_parallel_tool_use": True},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": user_text(problem, window)}]}
        ],
    }


def cache_key(model: str, temperature: float | None, problem: str, window: Window) -> str:
    """Response-cache key: model, prompt version, temperature, problem text and chunks."""
    material = json.dumps(
        {
            "model": model,
            "prompt_version": PROMPT_VERSION,
            "temperature": temperature,
            "problem": problem,
            "targets": window.targets,
            "context": window.context,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


@dataclass
class Parsed:
    """A validated response: good ``labels`` per chunk_idx, ``problems`` per chunk_idx
    (key ``-1`` for problems of the whole response), and whether it was cut off."""

    labels: dict[int, dict[str, Any]]
    problems: dict[int, list[str]]
    truncated: bool = False

    @property
    def valid(self) -> bool:
        return not self.problems and not self.truncated


def response_input(message: Mapping[str, Any]) -> tuple[Any, str | None]:
    """The tool input of a response (or JSON in its text), and an error when there is none or
    when several calls of the tool disagree."""
    blocks = message.get("content") or []
    calls = [
        block.get("input")
        for block in blocks
        if block.get("type") == "tool_use" and block.get("name") == TOOL_NAME
    ]
    if calls:
        if any(call != calls[0] for call in calls[1:]):
            return None, f"{len(calls)} {TOOL_NAME} calls with conflicting inputs"
        return calls[0], None
    texts = "".join(block.get("text") or "" for block in blocks if block.get("type") == "text")
    try:
        return loads_marking_duplicates(texts), None
    except json.JSONDecodeError as error:
        return None, f"no {TOOL_NAME} call and the text is not valid JSON ({error.msg})"


def is_chunk_key(key: str, targets: set[int]) -> bool:
    """Whether ``key`` names a chunk to label in canonical form (``"5"``, never ``"05"``)."""
    return key.isdigit() and str(int(key)) == key and int(key) in targets


def _entry_issues(entry: Any, index: int, allowed: set[int]) -> list[str]:
    """What is wrong with one chunk's entry (empty when it is usable)."""
    if isinstance(entry, dict) and DUPLICATE_KEYS in entry:
        return [f"repeated keys {entry[DUPLICATE_KEYS]} in the entry"]
    issues = [
        f"{'/'.join(map(str, error.path)) or 'entry'}: {error.message}"
        for error in _ENTRY_VALIDATOR.iter_errors(entry)
    ]
    if issues:
        return issues
    not_integers = [dep for dep in entry["depends_on"] if type(dep) is not int]
    if not_integers:
        return [f"depends_on {not_integers} are not integers"]
    bad = [dep for dep in entry["depends_on"] if dep >= index or dep not in allowed]
    if bad:
        return [f"depends_on {bad} are not earlier chunks shown in the prompt"]
    return []


def validate_response(message: Mapping[str, Any], window: Window) -> Parsed:
    """Check a response against the window: one answer (no conflicting tool calls, no repeated
    keys), every target index present exactly once under its canonical key, no other keys,
    tags from the taxonomy (JSON schema), integer dependencies only on earlier shown chunks."""
    truncated = message.get("stop_reason") == "max_tokens"
    payload, error = response_input(message)
    everyone = {index: [error] for index in window.indices} if error else {}
    if error or not isinstance(payload, dict):
        problem = error or f"the tool input is a {type(payload).__name__}, not an object"
        return Parsed({}, {**everyone, -1: [problem]}, truncated)
    labels: dict[int, dict[str, Any]] = {}
    problems: dict[int, list[str]] = {}
    targets = set(window.indices)
    allowed = window.allowed_dependencies()
    response_issues = []
    if DUPLICATE_KEYS in payload:
        response_issues.append(f"keys {payload[DUPLICATE_KEYS]} are given more than once")
    extra = sorted(
        key for key in payload if key != DUPLICATE_KEYS and not is_chunk_key(key, targets)
    )
    if extra:
        span = f"{window.indices[0]}..{window.indices[-1]}"
        response_issues.append(f"keys {extra} are not chunks to label ({span})")
    if response_issues:
        problems[-1] = response_issues
    repeated = {int(key) for key in payload.get(DUPLICATE_KEYS, []) if is_chunk_key(key, targets)}
    for index in window.indices:
        entry = payload.get(str(index))
        if entry is None:
            problems[index] = ["missing"]
            continue
        issues = _entry_issues(entry, index, allowed)
        if index in repeated:
            issues.append("given more than once")
        if issues:
            problems[index] = issues
        else:
            labels[index] = {
                "function_tags": list(entry["function_tags"]),
                "depends_on": sorted(entry["depends_on"]),
            }
    return Parsed(labels, problems, truncated)


def feedback_text(parsed: Parsed, window: Window, limit: int = 20) -> str:
    """The re-ask message listing what was wrong with a response."""
    lines = []
    for index, issues in sorted(parsed.problems.items()):
        where = "response" if index < 0 else f"chunk {index}"
        lines += [f"- {where}: {issue}" for issue in issues]
    if parsed.truncated:
        lines.append("- the response was cut off before it was complete")
    shown = lines[:limit] + ([f"- ... and {len(lines) - limit} more"] if len(lines) > limit else [])
    return (
        "Your answer could not be used:\n" + "\n".join(shown) + "\n"
        f"Call {TOOL_NAME} again with a complete, corrected entry for every chunk from "
        f"{window.indices[0]} to {window.indices[-1]}."
    )
