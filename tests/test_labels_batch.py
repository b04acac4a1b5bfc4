"""Batch labelling against the fake Message Batches API: submit, interrupt, resume, collect."""

from __future__ import annotations

import json
import logging
import random

import pytest
from labels_support import expected_chunks, label_params

from anchorflow.labels.batch import BatchLabeller, BatchPending
from anchorflow.labels.cache import ResponseCache
from anchorflow.labels.client import Api, RetryPolicy
from anchorflow.labels.labeller import Settings, WindowLabeller, anthropic_label_document

LOG = logging.getLogger("test_labels_batch")
PARAMS = label_params()


def make_api() -> Api:
    return Api(RetryPolicy(2, 0.001, 0.002), timeout_s=10, rng=random.Random(0), log=LOG)


def batch_run(records, cache: ResponseCache, poll_timeout_s: float) -> tuple[dict, Api]:
    api = make_api()
    labeller = BatchLabeller(Settings.from_params(PARAMS), api, cache, 0.001, poll_timeout_s, LOG)
    return labeller.run(records), api


def label_documents(records, cache: ResponseCache) -> tuple[list[dict], Api]:
    api = make_api()
    labeller = WindowLabeller(Settings.from_params(PARAMS), api, cache, LOG)
    return [anthropic_label_document(record, PARAMS, labeller) for record in records], api


def test_interrupted_batch_resumes_without_resubmitting(server, records, tmp_path):
    cache = ResponseCache(tmp_path / "cache")
    server.state.polls_to_end = 3
    with pytest.raises(BatchPending, match="rerun to resume"):
        batch_run(records, cache, poll_timeout_s=0)
    assert server.counts == {"batches.create": 1, "batches.retrieve": 1}
    (state_file,) = cache.batch_dir.glob("*.json")
    state = json.loads(state_file.read_text())
    assert not state["collected"] and len(state["requests"]) == len(records)

    summary, _ = batch_run(records, cache, poll_timeout_s=60)
    # no new batch: two more polls until "ended", then results() = one retrieve + one download
    assert server.counts == {"batches.create": 1, "batches.retrieve": 4, "batches.results": 1}
    assert summary["resumed"] == [state["id"]] and summary["submitted"] == []
    assert summary["cached"] == len(records) and summary["n_uncached"] == 0
    assert json.loads(state_file.read_text())["collected"]

    documents, api = label_documents(records, cache)
    assert api.n_requests == 0 and server.counts["messages"] == 0
    for document, record in zip(documents, records, strict=True):
        assert document["chunks"] == expected_chunks(record)
        assert document["usage"]["batch"] and document["usage"]["requests"] == 1

    summary, api = batch_run(records, cache, poll_timeout_s=60)
    assert api.n_requests == 0 and summary["n_pending"] == 0


def test_failed_batch_request_falls_back_to_one_message(server, records, tmp_path):
    cache = ResponseCache(tmp_path / "cache")
    settings = Settings.from_params(PARAMS)
    chosen = records[:3]
    failed_key = BatchLabeller(settings, make_api(), cache, 0.001, 1, LOG).pending(chosen)
    server.state.batch_errors = {sorted(failed_key)[0]}
    summary, _ = batch_run(chosen, cache, poll_timeout_s=60)
    assert summary["failed"] == 1 and summary["cached"] == 2 and summary["n_uncached"] == 1
    documents, api = label_documents(chosen, cache)
    assert api.n_requests == 1 == server.counts["messages"]
    assert [d["chunks"] for d in documents] == [expected_chunks(r) for r in chosen]
