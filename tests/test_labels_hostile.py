"""Labelling against a hostile fake API on 127.0.0.1: the server never controls our waits, a
reply that is not what it claims is retried or re-asked (never taken silently), a paid answer is
never bought twice, and batches survive lost records and interrupted creates.

Each test names the fault of docs/RELIABILITY.md it covers; each fails without its fix.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from pathlib import Path
from typing import Any

import anthropic
import pytest
from labels_support import DUMMY_KEY, expected_chunks, label_params

from anchorflow.labels import labeller as labeller_module
from anchorflow.labels.batch import BatchLabeller
from anchorflow.labels.cache import ResponseCache
from anchorflow.labels.client import Api, JobDeadlineExceeded, RetryPolicy, retry_after_s
from anchorflow.labels.labeller import (
    Settings,
    WindowLabeller,
    anthropic_label_document,
    trace_windows,
)
from anchorflow.labels.prompt import PROMPT_VERSION

LOG = logging.getLogger("test_labels_hostile")
POLICY = RetryPolicy(max_retries=3, base_delay_s=0.001, max_delay_s=0.05)


def params(**overrides: Any) -> dict[str, Any]:
    return label_params(prompt_version=PROMPT_VERSION, **overrides)


def make_api(**options: Any) -> Api:
    settings = {"timeout_s": 10, "rng": random.Random(0), "log": LOG, **options}
    return Api(settings.pop("policy", POLICY), **settings)


def label(records, cache_dir: Path, api: Api | None = None, **overrides: Any):
    api = api or make_api()
    settings = params(**overrides)
    labeller = WindowLabeller(Settings.from_params(settings), api, ResponseCache(cache_dir), LOG)
    return [anthropic_label_document(r, settings, labeller) for r in records], api


def first_request_only(fault: str):
    """A fault on the first request of every window; later requests are answered normally."""
    return lambda trace, seen, n_targets: fault if seen == 0 else None


def assert_labels_correct(documents, records) -> None:
    for document, record in zip(documents, records, strict=True):
        assert document["chunks"] == expected_chunks(record), record["trace"]
        for chunk in document["chunks"]:
            assert all(type(dep) is int for dep in chunk["depends_on"]), chunk


# --- 1. the server controls the wait ---------------------------------------------------------


@pytest.mark.parametrize("header", ["86400", "1e12", "inf", "Fri, 31 Dec 2100 23:59:59 GMT"])
def test_a_long_retry_after_is_capped_by_backoff_max(server, records, tmp_path, header):
    server.state.fault = first_request_only(f"retry-after={header}")
    slept: list[float] = []
    documents, api = label(records[:1], tmp_path, make_api(sleep=slept.append))
    assert_labels_correct(documents, records[:1])
    assert slept == [POLICY.max_delay_s] and api.n_requests == 2


@pytest.mark.parametrize("header", ["soon", "nan", "-", ""])
def test_an_unreadable_retry_after_falls_back_to_backoff(server, records, tmp_path, header):
    server.state.fault = first_request_only(f"retry-after={header}")
    slept: list[float] = []
    documents, api = label(records[:1], tmp_path, make_api(sleep=slept.append))
    assert_labels_correct(documents, records[:1])
    assert len(slept) == 1 and POLICY.base_delay_s / 2 <= slept[0] <= POLICY.base_delay_s


def test_retry_after_parsing() -> None:
    assert retry_after_s({"retry-after": "inf"}) == float("inf")
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({"retry-after-ms": "250"}) == 0.25
    assert retry_after_s({"retry-after-ms": "x", "retry-after": "3"}) == 3.0


def test_a_dripped_reply_is_cut_off_at_the_request_deadline(server, records, tmp_path):
    """A body sent in 20 pieces 0.2 s apart (4 s) against a 0.5 s request deadline: the first
    try is cut off after 0.5 s, not after the 4 s that per-read timeouts allow."""
    server.state.fault = first_request_only("drip")
    start = time.monotonic()
    documents, api = label(records[:1], tmp_path, make_api(timeout_s=0.5))
    elapsed = time.monotonic() - start
    assert_labels_correct(documents, records[:1])
    assert api.n_requests == 2 and len(api.delays) == 1
    assert elapsed < 2.5, f"the dripped reply held the request for {elapsed:.1f} s"


def test_a_job_stops_at_its_wall_clock_bound(server, records, tmp_path):
    server.state.fault = lambda trace, seen, n_targets: "529"
    patient = RetryPolicy(max_retries=1000, base_delay_s=0.05, max_delay_s=0.05)
    api = make_api(policy=patient, job_timeout_s=0.6)
    start = time.monotonic()
    with pytest.raises(JobDeadlineExceeded, match="job_timeout_s"):
        label(records[:1], tmp_path, api)
    assert time.monotonic() - start < 2.0
    assert 2 <= api.n_requests < 30


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
def test_a_client_error_is_not_retried(server, records, tmp_path, status):
    server.state.fault = lambda trace, seen, n_targets: f"status={status}"
    with pytest.raises(anthropic.APIStatusError) as raised:
        label(records[:1], tmp_path)
    assert raised.value.status_code == status
    assert server.counts["messages"] == 1


# --- 2. silent mislabels -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault", ["conflicting_tools", "duplicate_key", "zero_padded", "float_deps"]
)
def test_an_ambiguous_answer_is_asked_again(server, records, tmp_path, fault):
    """Two disagreeing tool calls, a repeated key (wrong value last), "05" beside "5", or
    ``depends_on: [3.0]``: each is re-asked, never taken."""
    server.state.fault = first_request_only(fault)
    documents, api = label(records[:2], tmp_path)
    assert_labels_correct(documents, records[:2])
    assert server.counts["messages"] == api.n_requests == 4  # one re-ask per trace


def test_the_request_disables_parallel_tool_use(server, records, tmp_path, monkeypatch):
    sent: list[dict] = []
    original = labeller_module.Settings.request

    def recording(self, problem, window):
        request = original(self, problem, window)
        sent.append(request)
        return request

    monkeypatch.setattr(labeller_module.Settings, "request", recording)
    label(records[:1], tmp_path)
    assert sent and all(r["tool_choice"]["disable_parallel_tool_use"] is True for r in sent)


# --- 3. malformed 2xx replies are retried; paid answers are kept --------------------------------


@pytest.mark.parametrize("fault", ["html", "truncated_body", "content_null"])
def test_a_malformed_2xx_reply_is_a_retried_transport_fault(server, records, tmp_path, fault):
    server.state.fault = first_request_only(fault)
    documents, api = label(records[:1], tmp_path)
    assert_labels_correct(documents, records[:1])
    assert api.n_requests == 2 and len(api.delays) == 1  # a transport retry, not a re-ask


def test_a_key_echoed_by_the_server_is_never_logged(server, records, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    server.state.fault = first_request_only("echo_key")
    documents, api = label(records[:1], tmp_path)
    assert_labels_correct(documents, records[:1])
    assert api.n_requests == 2
    assert DUMMY_KEY not in caplog.text and "MalformedResponse" in caplog.text


def test_unreadable_usage_keeps_the_paid_answer(server, records, tmp_path, caplog):
    server.state.fault = lambda trace, seen, n_targets: "usage_text"
    documents, api = label(records[:1], tmp_path)
    assert_labels_correct(documents, records[:1])
    assert api.n_requests == 1
    assert documents[0]["usage"]["input_tokens"] == 0
    assert "unreadable token counts" in caplog.text


def test_a_reply_is_stored_before_bookkeeping_that_can_fail(server, records, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = labeller_module.usage_of

    def failing_once(message):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("bookkeeping failed after the reply arrived")
        return original(message)

    monkeypatch.setattr(labeller_module, "usage_of", failing_once)
    with pytest.raises(RuntimeError, match="bookkeeping"):
        label(records[:1], tmp_path)
    documents, api = label(records[:1], tmp_path)
    assert_labels_correct(documents, records[:1])
    assert server.counts["messages"] == 1 and api.n_requests == 0
    assert not list((tmp_path / "replies").rglob("*.json"))  # settled once the window is done


# --- 5. cost -------------------------------------------------------------------------------------


def test_a_server_that_always_stops_at_max_tokens_costs_at_most_2n_minus_1(
    server, records, tmp_path
):
    record = min(records, key=lambda r: len(r["labels"]))
    n_chunks = sum(len(w.targets) for w in trace_windows(record, Settings.from_params(params())))
    server.state.fault = lambda trace, seen, n_targets: "max_tokens"
    documents, api = label([record], tmp_path, on_invalid="unknown")
    assert api.n_requests == server.counts["messages"] == 2 * n_chunks - 1
    assert documents[0]["report"]["n_invalid_unknown"] == n_chunks


# --- 4. batches ----------------------------------------------------------------------------------


def batch_labeller(cache: ResponseCache, api: Api | None = None) -> BatchLabeller:
    return BatchLabeller(Settings.from_params(params()), api or make_api(), cache, 0.001, 60, LOG)


def test_a_stale_batch_record_falls_back_to_synchronous_calls(server, records, tmp_path, caplog):
    cache = ResponseCache(tmp_path)
    chosen = records[:2]
    windows = batch_labeller(cache).pending(chosen)
    record_path = cache.batch_dir / "msgbatch_gone.json"
    record_path.parent.mkdir(parents=True)
    record_path.write_text(
        json.dumps({"id": "msgbatch_gone", "collected": False, "requests": windows})
    )
    summary = batch_labeller(cache).run(chosen)
    assert summary["stale"] == ["msgbatch_gone"] and summary["submitted"] == []
    assert str(record_path) in caplog.text and "synchronous" in caplog.text
    assert record_path.with_suffix(".stale").exists() and not record_path.exists()
    assert server.counts["batches.create"] == 0
    documents, api = label(chosen, tmp_path)
    assert_labels_correct(documents, chosen)
    assert api.n_requests == len(chosen)


def test_an_interrupted_create_is_found_again_not_paid_twice(
    server, records, tmp_path, monkeypatch
):
    cache = ResponseCache(tmp_path)
    chosen = records[:3]
    original = anthropic.resources.messages.batches.Batches.create

    def create_then_interrupt(self, **kwargs):
        original(self, **kwargs)  # the server has the batch; the reply never reaches the record
        raise KeyboardInterrupt

    monkeypatch.setattr(
        anthropic.resources.messages.batches.Batches, "create", create_then_interrupt
    )
    with pytest.raises(KeyboardInterrupt):
        batch_labeller(cache).run(chosen)
    assert server.counts["batches.create"] == 1
    monkeypatch.setattr(anthropic.resources.messages.batches.Batches, "create", original)
    summary = batch_labeller(cache).run(chosen)
    assert server.counts["batches.create"] == 1, "the interrupted batch was paid for twice"
    assert summary["recovered"] == ["msgbatch_0001"] and summary["cached"] == len(chosen)
    documents, api = label(chosen, tmp_path)
    assert_labels_correct(documents, chosen)
    assert api.n_requests == 0


def test_an_intent_whose_create_never_arrived_is_submitted_once(
    server, records, tmp_path, monkeypatch
):
    cache = ResponseCache(tmp_path)
    original = anthropic.resources.messages.batches.Batches.create

    def interrupted_before_sending(self, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(
        anthropic.resources.messages.batches.Batches, "create", interrupted_before_sending
    )
    with pytest.raises(KeyboardInterrupt):
        batch_labeller(cache).run(records[:1])
    monkeypatch.setattr(anthropic.resources.messages.batches.Batches, "create", original)
    summary = batch_labeller(cache).run(records[:1])
    assert summary["recovered"] == [] and len(summary["submitted"]) == 1
    assert server.counts["batches.create"] == 1 and summary["cached"] == 1


def test_conflicting_results_for_one_custom_id_are_not_taken(server, records, tmp_path):
    server.state.duplicated_results = True
    cache = ResponseCache(tmp_path)
    summary = batch_labeller(cache).run(records[:2])
    assert summary["cached"] == 0 and summary["failed"] == 2
    documents, api = label(records[:2], tmp_path)
    assert_labels_correct(documents, records[:2])
    assert api.n_requests == 2


def test_a_dropped_results_stream_is_retried(server, records, tmp_path):
    server.state.results_drops = 1
    summary = batch_labeller(ResponseCache(tmp_path)).run(records[:2])
    assert summary["cached"] == 2
    assert server.counts["batches.results"] == 2 and server.counts["batches.create"] == 1


def test_every_test_the_fault_matrix_names_exists() -> None:
    """docs/RELIABILITY.md stays current: each test it names is defined where it says."""
    tests = Path(__file__).parent
    document = (tests.parent / "docs" / "RELIABILITY.md").read_text()
    named = re.findall(r"`(test_\w+\.py)::(test_\w+)", document)
    assert len(named) >= 25
    for file, name in named:
        assert f"def {name}(" in (tests / file).read_text(), f"{file}::{name} does not exist"
