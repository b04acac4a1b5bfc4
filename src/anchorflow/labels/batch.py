"""Batch labelling with the Message Batches API (half price), resumable.

Every window not yet in the response cache becomes one batch request whose ``custom_id`` is
its cache key. The batch id and the windows it carries are written to
``<cache_dir>/batches/<batch_id>.json`` right after submission, so a run that is interrupted
(or gives up after ``poll_timeout_s``) resumes polling the same batch instead of submitting a
new one. Valid results go into the response cache; invalid or failed ones are left to the
per-trace (synchronous) labelling, which re-asks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from anchorflow.io import read_json, write_json
from anchorflow.labels.cache import ResponseCache
from anchorflow.labels.client import Api
from anchorflow.labels.labeller import (
    Settings,
    is_usable,
    outcome_from_parsed,
    trace_windows,
    usage_of,
)
from anchorflow.labels.prompt import Window, validate_response


class BatchPending(RuntimeError):
    """A batch is still processing after ``poll_timeout_s``; rerun to resume polling it."""


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
        summary: dict[str, Any] = {"n_pending": len(pending), "resumed": [], "submitted": []}
        counts: dict[str, int] = {"cached": 0, "invalid": 0, "failed": 0}
        for state_path in sorted(self.cache.batch_dir.glob("*.json")):
            state = read_json(state_path)
            if not state["collected"] and pending.keys() & state["requests"].keys():
                self.log.info(
                    "resuming batch %s (%d requests)", state["id"], len(state["requests"])
                )
                summary["resumed"].append(state["id"])
                self._collect(state, counts)
        remaining = {key: data for key, data in pending.items() if not self._cached(key)}
        if remaining:
            state = self._submit(remaining)
            summary["submitted"].append(state["id"])
            self._collect(state, counts)
        summary.update(counts)
        summary["n_uncached"] = sum(not self._cached(key) for key in pending)
        return summary

    def _cached(self, key: str) -> bool:
        return is_usable(self.cache.get(key), self.settings)

    def _submit(self, windows: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        requests = [
            {"custom_id": key, "params": self.settings.request(*_window(data))}
            for key, data in sorted(windows.items())
        ]
        batch = self.api.call(
            lambda: self.api.client.messages.batches.create(requests=requests), "batch create"
        )
        state = {"id": batch.id, "collected": False, "requests": dict(sorted(windows.items()))}
        write_json(self.cache.batch_dir / f"{batch.id}.json", state)
        self.log.info("submitted batch %s with %d requests", batch.id, len(requests))
        return state

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
            lambda: list(self.api.client.messages.batches.results(state["id"])),
            f"batch {state['id']} results",
        )
        for item in results:
            data = state["requests"].get(item.custom_id)
            if data is None:
                continue
            if item.result.type != "succeeded":
                counts["failed"] += 1
                self.log.warning("batch request %s: %s", item.custom_id[:12], item.result.type)
                continue
            message = item.result.message.model_dump(mode="json")
            parsed = validate_response(message, _window(data)[1])
            if not parsed.valid:
                counts["invalid"] += 1
                self.log.warning("batch request %s: invalid response", item.custom_id[:12])
                continue
            self.cache.put(
                item.custom_id, outcome_from_parsed(parsed, usage_of(message), 1, "batch")
            )
            counts["cached"] += 1
        write_json(self.cache.batch_dir / f"{state['id']}.json", {**state, "collected": True})
