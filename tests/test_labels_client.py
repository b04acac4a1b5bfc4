"""Labelling with Claude against the fake Messages API: faults, re-asks, cache, exact counts.

Request counts are exact because the SDK client runs with ``max_retries=0`` and every retry
and re-ask is made (and counted) by our code; the fake server counts what it receives.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest
from fake_anthropic import RETRY_AFTER_S
from labels_support import DUMMY_KEY, expected_chunks, label_params

from anchorflow.io import write_jsonl
from anchorflow.labels.cache import ResponseCache
from anchorflow.labels.client import Api, RetryPolicy
from anchorflow.labels.dataset import LabelError
from anchorflow.labels.labeller import (
    Settings,
    WindowLabeller,
    anthropic_label_document,
    label_trace_file,
    trace_windows,
)
from anchorflow.labels.prompt import PROMPT_VERSION
from anchorflow.taxonomy import TAGS

POLICY = RetryPolicy(max_retries=3, base_delay_s=0.001, max_delay_s=0.05)
LOG = logging.getLogger("test_labels")
FAULTS = ["429", "529", "500", "drop", "malformed", "missing", "unknown_tag", "forward", "shifted"]
OUTPUT_LIMIT = 100  # the fake cuts off responses for more chunks than this at max_tokens


def params(**overrides: Any) -> dict[str, Any]:
    return label_params(prompt_version=PROMPT_VERSION, **overrides)


def label_all(records, cache_dir: Path, **overrides: Any) -> tuple[list[dict], Api]:
    """Label records through one fresh Api and the cache at ``cache_dir``."""
    api = Api(POLICY, timeout_s=10, rng=random.Random(0), log=LOG)
    settings = params(**overrides)
    labeller = WindowLabeller(Settings.from_params(settings), api, ResponseCache(cache_dir), LOG)
    return [anthropic_label_document(r, settings, labeller) for r in records], api


def assert_complete_and_correct(documents, records) -> None:
    for document, record in zip(documents, records, strict=True):
        assert document["chunks"] == expected_chunks(record), record["trace"]
        for chunk in document["chunks"]:
            assert chunk["function_tags"] and set(chunk["function_tags"]) <= set(TAGS)
            assert all(dep < chunk["chunk_idx"] for dep in chunk["depends_on"])


def requests_with_output_limit(n_chunks: int, limit: int) -> int:
    """Requests for a window when responses for more than ``limit`` chunks are cut off and the
    window is halved."""
    if n_chunks <= limit:
        return 1
    half = n_chunks // 2
    return (
        1
        + requests_with_output_limit(half, limit)
        + requests_with_output_limit(n_chunks - half, limit)
    )


def mixed_fault(kinds: list[str | None]):
    """Trace ``t`` suffers ``kinds[t % len(kinds)]`` on the first request of each window
    (``max_tokens``: on every request for more than OUTPUT_LIMIT chunks)."""

    def fault(trace: int, seen: int, n_targets: int) -> str | None:
        kind = kinds[trace % len(kinds)]
        if kind == "max_tokens":
            return kind if n_targets > OUTPUT_LIMIT else None
        return kind if seen == 0 else None

    return fault


def test_twenty_traces_under_every_fault_then_zero_requests(server, records, tmp_path):
    kinds = [None, *FAULTS, "max_tokens"]
    server.state.fault = mixed_fault(kinds)
    documents, api = label_all(records, tmp_path / "cache")
    assert_complete_and_correct(documents, records)
    expected = 0
    for position, record in enumerate(records):
        kind = kinds[position % len(kinds)]
        n_chunks = len(expected_chunks(record))
        if kind == "max_tokens":
            expected += requests_with_output_limit(n_chunks, OUTPUT_LIMIT)
        else:
            expected += 1 if kind is None else 2
    assert server.counts["messages"] == api.n_requests == expected
    assert api.delays.count(float(RETRY_AFTER_S)) == 2  # the two 429 traces waited as told
    again, api_again = label_all(records, tmp_path / "cache")
    assert api_again.n_requests == 0 and server.counts["messages"] == expected
    assert again == documents


@pytest.mark.parametrize("fault", FAULTS)
def test_one_fault_costs_exactly_one_more_request(server, records, tmp_path, fault):
    record = min(records, key=lambda r: len(r["chunks"]))
    server.state.fault = lambda trace, seen, n_targets: fault if seen == 0 else None
    documents, api = label_all([record], tmp_path / "cache")
    assert_complete_and_correct(documents, [record])
    assert server.counts["messages"] == api.n_requests == 2
    if fault == "429":
        assert api.delays == [float(RETRY_AFTER_S)]
    elif fault in ("529", "500", "drop"):
        base = POLICY.base_delay_s
        assert len(api.delays) == 1 and base / 2 <= api.delays[0] <= base
    else:
        assert api.delays == []  # re-asks are immediate


def test_windows_with_context_label_every_chunk_once(server, records, tmp_path):
    chosen = records[:4]
    documents, _ = label_all(chosen, tmp_path / "cache", window_chunks=40, context_chunks=25)
    assert_complete_and_correct(documents, chosen)
    settings = Settings.from_params(params(window_chunks=40, context_chunks=25))
    n_windows = sum(len(trace_windows(record, settings)) for record in chosen)
    assert server.counts["messages"] == n_windows > len(chosen)
    assert [d["usage"]["windows"] for d in documents] == [
        len(trace_windows(record, settings)) for record in chosen
    ]


def test_retries_exhausted_fail_loudly(server, records, tmp_path):
    server.state.fault = lambda trace, seen, n_targets: "529"
    with pytest.raises(Exception, match="529|verloaded"):
        label_all(records[:1], tmp_path / "cache")
    assert server.counts["messages"] == POLICY.max_retries + 1
    assert not list((tmp_path / "cache").rglob("*.json"))


def test_invalid_after_reasks_fails_or_marks_unknown(server, records, tmp_path, caplog):
    record = records[0]
    server.state.fault = lambda trace, seen, n_targets: "missing"
    with pytest.raises(LabelError, match="still invalid after 2 re-asks"):
        label_all([record], tmp_path / "cache")
    assert server.counts["messages"] == 3
    documents, _ = label_all([record], tmp_path / "cache", on_invalid="unknown")
    assert server.counts["messages"] == 6  # the failed window was not cached
    expected = expected_chunks(record)
    last = expected[-1]["chunk_idx"]
    assert documents[0]["chunks"][:-1] == expected[:-1]
    assert documents[0]["chunks"][-1]["function_tags"] == ["unknown"]
    assert documents[0]["report"] == {"n_invalid_unknown": 1, "invalid_unknown": [last]}
    assert "tagged unknown" in caplog.text
    _, api = label_all([record], tmp_path / "cache", on_invalid="unknown")
    assert api.n_requests == 0
    # in fail mode a cached partial outcome is not trusted: the window is asked again
    server.state.fault = lambda trace, seen, n_targets: None
    documents, api = label_all([record], tmp_path / "cache")
    assert api.n_requests == 1 and documents[0]["chunks"] == expected


def test_label_file_usage_and_no_key_anywhere(server, records, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    records_file = tmp_path / "records.jsonl"
    write_jsonl(records_file, records[:2])
    client = {"cache_dir": str(tmp_path / "cache"), "timeout_s": 10, "job_timeout_s": 600}
    client |= {"max_retries": 1, "backoff_base_s": 0.001, "backoff_max_s": 0.01}
    documents = [
        label_trace_file(
            str(records_file),
            record["rollouts"],
            record["trace"],
            str(tmp_path / "labels" / f"{record['trace']}.json"),
            params(),
            client,
            LOG,
        )
        for record in records[:2]
    ]
    written = json.loads((tmp_path / "labels" / f"{records[0]['trace']}.json").read_text())
    assert written == documents[0]
    assert written["source"] == "anthropic" and written["prompt_version"] == PROMPT_VERSION
    assert written["model"] == "claude-sonnet-4-6" and written["params"] == params()
    files = list(tmp_path.rglob("*.json"))
    assert len(files) == 4 and all(DUMMY_KEY not in f.read_text() for f in files)
    assert DUMMY_KEY not in caplog.text
    usage = documents[0]["usage"]
    assert usage["requests"] == 1 and usage["windows"] == 1 and usage["input_tokens"] > 0
    # the instruction prefix is written to the prompt cache once, then read
    assert usage["cache_creation_input_tokens"] > 0 and usage["cache_read_input_tokens"] == 0
    assert documents[1]["usage"]["cache_read_input_tokens"] > 0


def test_changed_model_or_prompt_misses_the_cache(server, records, tmp_path, monkeypatch):
    label_all(records[:1], tmp_path / "cache")
    label_all(records[:1], tmp_path / "cache", model="claude-haiku-4-5")
    assert server.counts["messages"] == 2
    monkeypatch.setattr("anchorflow.labels.prompt.PROMPT_VERSION", "v2-test")
    label_all(records[:1], tmp_path / "cache")
    assert server.counts["messages"] == 3


def test_no_api_and_no_cache_is_an_error(records, tmp_path):
    labeller = WindowLabeller(Settings.from_params(params()), None, ResponseCache(tmp_path), LOG)
    window = trace_windows(records[0], labeller.settings)[0]
    with pytest.raises(LabelError, match="no API client"):
        labeller.label(records[0]["problem_text"], window, "t")
