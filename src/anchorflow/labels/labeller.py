"""Label a trace with Claude: windows, cache, re-asks, merge; and the rule-level entry point.

A window's outcome (labels, token usage, request count) is cached under its key before it
is used, so an interrupted run loses at most the window in flight, and a rerun, even after a
code change, makes no request for a window already labelled.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from anchorflow.data.rollouts import get_record
from anchorflow.io import write_json
from anchorflow.labels import prompt
from anchorflow.labels.cache import ResponseCache
from anchorflow.labels.client import Api, RetryPolicy
from anchorflow.labels.dataset import (
    LabelError,
    dataset_label_document,
    label_document,
    labelled_chunks,
)
from anchorflow.labels.prompt import (
    PROMPT_VERSION,
    Parsed,
    Window,
    build_request,
    cache_key,
    feedback_text,
    make_windows,
    split_window,
    validate_response,
)
from anchorflow.labels.usage import add_usage, usage_of
from anchorflow.taxonomy import UNKNOWN


def request_key(request: Mapping[str, Any]) -> str:
    """SHA-256 of a whole request (model, prompt, re-ask turns) and the prompt version: the key
    of its stored reply."""
    material = json.dumps(
        {"prompt_version": prompt.PROMPT_VERSION, "request": request},
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Settings:
    """Result-affecting labelling settings (``labels`` config section)."""

    model: str
    max_tokens: int
    temperature: float | None
    window_chunks: int
    context_chunks: int | None
    max_reasks: int
    on_invalid: str

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Settings:
        return cls(**{name: params[name] for name in cls.__dataclass_fields__})

    def request(self, problem: str, window: Window) -> dict[str, Any]:
        return build_request(problem, window, self.model, self.max_tokens, self.temperature)

    def key(self, problem: str, window: Window) -> str:
        return cache_key(self.model, self.temperature, problem, window)


def outcome_from_parsed(parsed: Parsed, usage: Mapping[str, int], requests: int, via: str) -> dict:
    """A cache entry for a window: labels keyed by chunk_idx (as strings), leftover problems."""
    return {
        "prompt_version": PROMPT_VERSION,
        "labels": {str(index): entry for index, entry in sorted(parsed.labels.items())},
        "invalid": {str(index): issues for index, issues in sorted(parsed.problems.items())},
        "truncated": parsed.truncated,
        "usage": dict(usage),
        "requests": requests,
        "via": via,
    }


def is_usable(entry: Mapping[str, Any] | None, settings: Settings) -> bool:
    """A cached outcome can be used when complete, or when leftovers may become `unknown`."""
    if entry is None:
        return False
    return settings.on_invalid == "unknown" or not (entry["invalid"] or entry["truncated"])


class WindowLabeller:
    """Labels windows through the cache, then the API, re-asking on invalid responses."""

    def __init__(
        self, settings: Settings, api: Api | None, cache: ResponseCache, log: logging.Logger
    ) -> None:
        self.settings = settings
        self.api = api
        self.cache = cache
        self.log = log
        self.unsettled_replies: list[str] = []

    def label(self, problem: str, window: Window, what: str) -> dict[str, Any]:
        """The outcome of a window, from the cache when possible."""
        key = self.settings.key(problem, window)
        entry = self.cache.get(key)
        if is_usable(entry, self.settings):
            return entry
        entry = self._ask(problem, window, what)
        self.cache.put(key, entry)
        self._settle_replies()
        return entry

    def _settle_replies(self) -> None:
        """Drop the stored replies of a window whose outcome is decided (cached, or failed for
        good): they only guard the time between a reply's arrival and that decision, so a rerun
        in ``fail`` mode asks afresh instead of replaying the invalid answers."""
        for key in self.unsettled_replies:
            self.cache.reply_path(key).unlink(missing_ok=True)
        self.unsettled_replies.clear()

    def _ask(self, problem: str, window: Window, what: str) -> dict[str, Any]:
        if self.api is None:
            raise LabelError(f"{what}: not in the response cache and no API client is available")
        request = self.settings.request(problem, window)
        messages = list(request["messages"])
        usage = add_usage()
        for ask in range(self.settings.max_reasks + 1):
            message = self._reply({**request, "messages": messages}, what)
            reply_usage = usage_of(message)
            if "unreadable_usage" in reply_usage:
                self.log.warning(
                    "%s: unreadable token counts %s in the reply, counted as 0",
                    what,
                    reply_usage["unreadable_usage"],
                )
            usage = add_usage(usage, reply_usage)
            parsed = validate_response(message, window)
            if parsed.valid:
                return outcome_from_parsed(parsed, usage, ask + 1, "messages")
            if parsed.truncated and len(window.targets) > 1:
                self.log.warning("%s: cut off at max_tokens; splitting the window", what)
                return self._split(problem, window, what, usage, ask + 1)
            if parsed.truncated:
                # One chunk cut off at max_tokens would be cut off again: asking once more only
                # pays twice. A window of n chunks thus costs at most 2n - 1 requests.
                self.log.warning("%s: one chunk cut off at max_tokens; not asked again", what)
                return self._give_up(parsed, usage, ask + 1, f"{what}: cut off at max_tokens")
            self.log.warning("%s: invalid response (%s)", what, _summary(parsed))
            messages += reask_messages(message, parsed, window)
        reasks = self.settings.max_reasks
        return self._give_up(
            parsed, usage, reasks + 1, f"{what}: still invalid after {reasks} re-asks"
        )

    def _give_up(self, parsed: Parsed, usage: dict, requests: int, why: str) -> dict[str, Any]:
        """A window that stays invalid: fail, or keep what is valid (``on_invalid: unknown``)."""
        if self.settings.on_invalid == "fail":
            self._settle_replies()
            raise LabelError(f"{why}: {_summary(parsed)}")
        return outcome_from_parsed(parsed, usage, requests, "messages")

    def _reply(self, request: dict[str, Any], what: str) -> dict[str, Any]:
        """The reply to ``request``: stored from an earlier try, or bought and stored at once,
        before any bookkeeping that could fail."""
        key = request_key(request)
        message = self.cache.get_reply(key)
        if message is None:
            message = self.api.create_message(request, what)
            self.cache.put_reply(key, message)
        self.unsettled_replies.append(key)
        return message

    def _split(
        self, problem: str, window: Window, what: str, usage: dict, requests: int
    ) -> dict[str, Any]:
        halves = split_window(window, self.settings.context_chunks)
        parts = [
            self.label(problem, half, f"{what}[{half.indices[0]}..{half.indices[-1]}]")
            for half in halves
        ]
        return {
            "prompt_version": PROMPT_VERSION,
            "labels": {k: v for part in parts for k, v in part["labels"].items()},
            "invalid": {k: v for part in parts for k, v in part["invalid"].items()},
            "truncated": any(part["truncated"] for part in parts),
            "usage": add_usage(usage, *(part["usage"] for part in parts)),
            "requests": requests + sum(part["requests"] for part in parts),
            "via": "split",
        }


def _summary(parsed: Parsed) -> str:
    bad = [index for index in parsed.problems if index >= 0]
    parts = [f"{len(bad)} chunk(s) with problems"]
    if -1 in parsed.problems:
        parts.append("; ".join(parsed.problems[-1]))
    if parsed.truncated:
        parts.append("truncated at max_tokens")
    return ", ".join(parts)


def reask_messages(message: Mapping[str, Any], parsed: Parsed, window: Window) -> list[dict]:
    """The assistant turn that failed plus our correction request (a tool_result error when
    the model called the tool, a plain user message otherwise)."""
    content = [
        {key: block[key] for key in ("type", "id", "name", "input", "text") if key in block}
        for block in message.get("content", [])
        if block.get("type") in ("text", "tool_use")
    ]
    text = feedback_text(parsed, window)
    tool_uses = [block for block in content if block["type"] == "tool_use"]
    if not content:
        content = [{"type": "text", "text": "(empty reply)"}]
    if tool_uses:
        reply = [
            {"type": "tool_result", "tool_use_id": block["id"], "is_error": True, "content": text}
            for block in tool_uses
        ]
    else:
        reply = [{"type": "text", "text": text}]
    return [{"role": "assistant", "content": content}, {"role": "user", "content": reply}]


def trace_windows(record: Mapping[str, Any], settings: Settings) -> list[Window]:
    return make_windows(labelled_chunks(record), settings.window_chunks, settings.context_chunks)


def anthropic_label_document(
    record: Mapping[str, Any],
    params: Mapping[str, Any],
    labeller: WindowLabeller,
) -> dict[str, Any]:
    """The label file of a record labelled with Claude, every window through ``labeller``."""
    settings = labeller.settings
    name = f"{record['rollouts']}/{record['trace']}"
    outcomes = [
        labeller.label(record["problem_text"], window, f"{name}[{window.indices[0]}..]")
        for window in trace_windows(record, settings)
    ]
    labels = {int(k): v for outcome in outcomes for k, v in outcome["labels"].items()}
    chunks, unknown = [], []
    for index, text in labelled_chunks(record):
        entry = labels.get(index)
        if entry is None:
            unknown.append(index)
            entry = {"function_tags": [UNKNOWN], "depends_on": []}
        chunks.append({"chunk_idx": index, "text": text, **entry})
    if unknown:
        labeller.log.warning(
            "%s: %d chunk(s) stayed invalid and are tagged unknown: %s", name, len(unknown), unknown
        )
    usage = add_usage(*(outcome["usage"] for outcome in outcomes))
    usage["requests"] = sum(outcome["requests"] for outcome in outcomes)
    usage["windows"] = len(outcomes)
    usage["batch"] = any(outcome["via"] == "batch" for outcome in outcomes)
    report = {"n_invalid_unknown": len(unknown), "invalid_unknown": unknown}
    return label_document(
        record,
        "anthropic",
        chunks,
        params,
        model=settings.model,
        prompt_version=PROMPT_VERSION,
        report=report,
        usage=usage,
    )


TRANSPORT_KEYS = (
    "max_retries",
    "backoff_base_s",
    "backoff_max_s",
    "timeout_s",
    "job_timeout_s",
    "batch",
    "poll_interval_s",
    "poll_timeout_s",
    "cache_dir",
)


def transport_settings(labels_config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``labels`` settings that cannot change a label (retries, waits, deadlines, polling,
    where the cache lies). Rule scripts read them from the config, never from params, so
    changing one reruns no job; none of them enters a cache key."""
    return {key: labels_config[key] for key in TRANSPORT_KEYS}


def make_api(
    client_settings: Mapping[str, Any], log: logging.Logger, job_deadline: bool = True
) -> Api:
    """An API client from the ``labels`` transport settings (key from the environment); with
    ``job_deadline``, bounded by ``job_timeout_s``."""
    return Api(
        RetryPolicy.from_settings(client_settings),
        timeout_s=float(client_settings["timeout_s"]),
        job_timeout_s=float(client_settings["job_timeout_s"]) if job_deadline else None,
        log=log,
    )


def label_trace_file(
    records_path: str,
    rollouts: str,
    trace: str,
    output: str,
    params: Mapping[str, Any],
    client_settings: Mapping[str, Any],
    log: logging.Logger,
    api: Api | None = None,
) -> dict[str, Any]:
    """Write the label file of one trace for ``params["source"]``; return it."""
    record = get_record(records_path, rollouts, trace)
    if params["source"] == "dataset":
        document = dataset_label_document(record, params)
    else:
        if PROMPT_VERSION != params["prompt_version"]:
            raise LabelError(
                f"params are for prompt {params['prompt_version']}, code has {PROMPT_VERSION}"
            )
        labeller = WindowLabeller(
            Settings.from_params(params),
            api or make_api(client_settings, log),
            ResponseCache(client_settings["cache_dir"]),
            log,
        )
        before = labeller.api.n_requests
        document = anthropic_label_document(record, params, labeller)
        log.info(
            "%s/%s: %d HTTP request(s) made now", rollouts, trace, labeller.api.n_requests - before
        )
    write_json(output, document)
    log.info(
        "%s/%s: %d chunks labelled (%s)", rollouts, trace, len(document["chunks"]), params["source"]
    )
    return document
