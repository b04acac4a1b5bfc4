"""Batch labelling with the Message Batches API (half price), resumable.

Every window not yet in the response cache becomes one batch request whose ``custom_id`` is its
cache key. Before the batch is created, its intent (the windows, their count and the time) is
written to ``<cache_dir>/batches/intent-<digest>.json``; the batch id and the windows it carries
are written to ``<cache_dir>/batches/<batch_id>.json`` right after submission, and the intent is
removed. A run that is interrupted (or gives up after ``poll_timeout_s``) resumes polling the
same batch instead of submitting a new one; one interrupted while ``create`` was in flight finds
its batch in the server's batch list (created after the intent was written, allowing
``CLOCK_SKEW_S`` of clock difference, with as many requests) and adopts it, so nothing is paid
twice; results whose ``custom_id`` is not one of its windows are ignored. A record whose batch
the server no longer knows (404: expired, deleted, another workspace) is set aside as
``<batch_id>.stale`` with a warning naming it, and its windows are left to the per-trace
synchronous calls. Valid results go into the response cache; invalid or failed ones are left to
the per-trace (synchronous) labelling, which re-asks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anthropic

from anchorflow.io import read_json, write_json
from anchorflow.labels.cache import ResponseCache
from anchorflow.labels.client import Api, MalformedResponse, loads_marking_duplicates
from anchorflow.labels.labeller import Settings, is_usable, outcome_from_parsed, trace_windows
from anchorflow.labels.prompt import Window, validate_response
from anchorflow.labels.usage import usage_of

# An interrupted create is matched to a listed batch created at most this long before its intent
# was written (clock differences between this machine and the server).
CLOCK_SKEW_S = 300.0


class BatchPending(RuntimeError):
    """A batch is still processing after ``poll_timeout_s``; rerun to resume polling it."""


def _requests_total(batch: Any) -> int:
    counts = batch.request_counts
    return sum(
        getattr(counts, name)
        for name in ("processing", "succeeded", "errored", "canceled", "expired")
    )


def _conflicting_ids(results: Sequence[Mapping[str, Any]]) -> set[str]:
    """The custom ids that come with more than one different result."""
    seen: dict[str, Any] = {}
    conflicting = set()
    for item in results:
        custom_id = str(item.get("custom_id"))
        if custom_id in seen and seen[custom_id] != item.get("result"):
            conflicting.add(custom_id)
        seen.setdefault(custom_id, item.get("result"))
    return conflicting


def parse_results(body: bytes) -> list[dict[str, Any]]:
    """The lines of a batch-results JSONL body; :class:`MalformedResponse` (retryable) when a
    line is cut off or is not a result object."""
    results = []
    for number, line in enumerate(body.decode("utf-8", errors="strict").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = loads_marking_duplicates(line)
        except json.JSONDecodeError as error:
            raise MalformedResponse(f"batch results line {number} is not JSON ({error})") from None
        if not isinstance(item, dict) or not isinstance(item.get("result"), dict):
            raise MalformedResponse(f"batch results line {number} is not a result object")
        results.append(item)
    return results


def _window_json(problem: str, window: Window) -> dict[str, Any]:
    return {"problem": problem, "targets": window.targets, "context": window.context}


def _window(data: Mapping[str, Any]) -> tuple[str, Window]:
    targets = tuple((int(index), text) for index, text in data["targets"])
    context = tuple((int(index), text) for index, text in data["context"])
    return data["problem"], Window(targets, context)


class BatchLabeller:
    """Submits, polls and collects label batches through ``api`` into ``cache``."""

    def __init__(
        self,
        settings: Settings,
        api: Api,
        cache: ResponseCache,
        poll_interval_s: float,
        poll_timeout_s: float,
        log: logging.Logger,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.api = api
        self.cache = cache
        self.poll_interval_s = poll_interval_s
        self.poll_timeout_s = poll_timeout_s
        self.log = log
        self.clock = clock

    def pending(self, records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """Windows of ``records`` without a usable cache entry, keyed by cache key."""
        windows = {}
        for record in records:
            for window in trace_windows(record, self.settings):
                key = self.settings.key(record["problem_text"], window)
                if not is_usable(self.cache.get(key), self.settings):
                    windows[key] = _window_json(record["problem_text"], window)
        return windows

    def run(self, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Label every uncached window of ``records`` by batch; return a summary."""
        pending = self.pending(records)
        summary: dict[str, Any] = {
            "n_pending": len(pending),
            "resumed": [],
            "recovered": [],
            "stale": [],
            "submitted": [],
        }
        counts: dict[str, int] = {"cached": 0, "invalid": 0, "failed": 0}
        for intent_path in sorted(self.cache.batch_dir.glob("intent-*.json")):
            recovered = self._recover(intent_path)
            if recovered:
                summary["recovered"].append(recovered)
        synchronous: set[str] = set()
        records = [
            p for p in self.cache.batch_dir.glob("*.json") if not p.name.startswith("intent-")
        ]
        for state_path in sorted(records):
            state = read_json(state_path)
            if not state["collected"] and pending.keys() & state["requests"].keys():
                self.log.info(
                    "resuming batch %s (%d requests)", state["id"], len(state["requests"])
                )
                try:
                    self._collect(state, counts)
                except anthropic.NotFoundError:
                    synchronous |= state["requests"].keys()
                    summary["stale"].append(self._set_aside(state_path, state))
                    continue
                summary["resumed"].append(state["id"])
        remaining = {
            key: data
            for key, data in pending.items()
            if key not in synchronous and not self._cached(key)
        }
        if remaining:
            state = self._submit(remaining)
            summary["submitted"].append(state["id"])
            self._collect(state, counts)
        summary.update(counts)
        summary["n_uncached"] = sum(not self._cached(key) for key in pending)
        return summary

    def _cached(self, key: str) -> bool:
        return is_usable(self.cache.get(key), self.settings)

    def _set_aside(self, state_path: Path, state: Mapping[str, Any]) -> str:
        """Move a record whose batch the server does not know to ``<id>.stale``; warn."""
        stale = state_path.with_suffix(".stale")
        state_path.replace(stale)
        self.log.warning(
            "batch record %s names batch %s, which the server does not know (expired, deleted "
            "or in another workspace); it is set aside as %s and its %d window(s) are labelled "
            "by synchronous calls instead",
            state_path,
            state["id"],
            stale.name,
            len(state["requests"]),
        )
        return state["id"]

    def _submit(self, windows: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """Record the intent, create the batch, record its id, drop the intent."""
        ordered = dict(sorted(windows.items()))
        requests = [
            {"custom_id": key, "params": self.settings.request(*_window(data))}
            for key, data in ordered.items()
        ]
        digest = hashlib.sha256("".join(ordered).encode()).hexdigest()[:16]
        intent_path = self.cache.batch_dir / f"intent-{digest}.json"
        write_json(
            intent_path,
            {"submitted_at": time.time(), "n_requests": len(requests), "requests": ordered},
        )
        batch = self.api.call(
            lambda: self.api.client.messages.batches.create(requests=requests), "batch create"
        )
        state = self._record(batch.id, ordered, intent_path)
        self.log.info("submitted batch %s with %d requests", batch.id, len(requests))
        return state

    def _record(self, batch_id: str, windows: dict[str, Any], intent_path: Path) -> dict[str, Any]:
        state = {"id": batch_id, "collected": False, "requests": windows}
        write_json(self.cache.batch_dir / f"{batch_id}.json", state)
        intent_path.unlink(missing_ok=True)
        return state

    def _recover(self, intent_path: Path) -> str | None:
        """Find the batch of an interrupted ``create`` in the server's list (the earliest one
        created after the intent, with as many requests) and record it; drop the intent when
        none exists (the create never reached the server). Returns the adopted batch id."""
        intent = read_json(intent_path)
        since = intent["submitted_at"] - CLOCK_SKEW_S

        def candidates() -> list[Any]:
            found = []
            for batch in self.api.client.messages.batches.list(limit=100):
                created = batch.created_at.timestamp()
                if created < since:
                    break  # the list is newest first
                if _requests_total(batch) == intent["n_requests"]:
                    found.append(batch)
            return found

        found = self.api.call(candidates, "batch list")
        if not found:
            self.log.warning(
                "%s: no batch was created for this intent (the create never reached the server); "
                "its windows are submitted again",
                intent_path,
            )
            intent_path.unlink()
            return None
        batch = min(found, key=lambda item: item.created_at)
        self.log.warning(
            "%s: the create was interrupted; adopting batch %s (created %s, %d requests) instead "
            "of paying for a second one",
            intent_path,
            batch.id,
            batch.created_at.isoformat(),
            intent["n_requests"],
        )
        self._record(batch.id, intent["requests"], intent_path)
        return batch.id

    def _wait(self, batch_id: str) -> None:
        start = self.clock()
        while True:
            batch = self.api.call(
                lambda: self.api.client.messages.batches.retrieve(batch_id), f"batch {batch_id}"
            )
            if batch.processing_status == "ended":
                return
            if self.clock() - start >= self.poll_timeout_s:
                raise BatchPending(
                    f"batch {batch_id} is still {batch.processing_status} after "
                    f"{self.poll_timeout_s} s; rerun to resume polling it"
                )
            self.api.sleep(self.poll_interval_s)

    def _collect(self, state: dict[str, Any], counts: dict[str, int]) -> None:
        self._wait(state["id"])
        results = self.api.call(
            lambda: parse_results(
                self.api.client.messages.batches.with_raw_response.results(state["id"]).read()
            ),
            f"batch {state['id']} results",
        )
        repeated = _conflicting_ids(results)
        handled: set[str] = set()
        for item in results:
            custom_id = str(item.get("custom_id"))
            data = state["requests"].get(custom_id)
            if data is None or custom_id in handled:
                continue
            handled.add(custom_id)
            if custom_id in repeated:
                counts["failed"] += 1
                self.log.warning(
                    "batch request %s: several different results; none is taken", custom_id[:12]
                )
                continue
            result = item["result"]
            message = result.get("message")
            content = message.get("content") if isinstance(message, dict) else None
            if result.get("type") != "succeeded" or not isinstance(content, list):
                counts["failed"] += 1
                self.log.warning("batch request %s: %s", custom_id[:12], result.get("type"))
                continue
            parsed = validate_response(message, _window(data)[1])
            if not parsed.valid:
                counts["invalid"] += 1
                self.log.warning("batch request %s: invalid response", custom_id[:12])
                continue
            self.cache.put(custom_id, outcome_from_parsed(parsed, usage_of(message), 1, "batch"))
            counts["cached"] += 1
        write_json(self.cache.batch_dir / f"{state['id']}.json", {**state, "collected": True})
