"""Shared fixtures of the labelling tests: real-sample records and the fake API's catalogue."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import pytest
from fake_anthropic import CatalogTrace, FakeServer
from real_data import PAPER_PROBLEMS, QWEN14B_ROLLOUTS, REAL_ROLLOUTS

from anchorflow.data.rollouts import acquire, requested_traces
from anchorflow.labels.dataset import dataset_chunk_labels

DUMMY_KEY = "sk-ant-test-dummy-key-0123456789"


@cache
def _real_records() -> tuple[dict[str, Any], ...]:
    requests = requested_traces([QWEN14B_ROLLOUTS], PAPER_PROBLEMS, ["correct", "incorrect"])
    records, exclusions = acquire(str(REAL_ROLLOUTS), requests)
    assert not exclusions
    return tuple(records)


def real_records() -> list[dict[str, Any]]:
    """The 20 records of the real sample, built by the acquisition code."""
    return [dict(record) for record in _real_records()]


def catalog(records: list[dict[str, Any]]) -> list[CatalogTrace]:
    """What the fake server answers: each trace's dataset labels, keyed by chunk_idx."""
    traces = []
    for record in records:
        chunks, _ = dataset_chunk_labels(record)
        traces.append(
            CatalogTrace(
                problem=record["problem_text"],
                texts=dict(enumerate(record["chunks"])),
                labels={
                    chunk["chunk_idx"]: {
                        "function_tags": chunk["function_tags"],
                        "depends_on": chunk["depends_on"],
                    }
                    for chunk in chunks
                },
            )
        )
    return traces


def expected_chunks(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The label-file chunks a correct labelling of ``record`` must produce."""
    chunks, _ = dataset_chunk_labels(record)
    return chunks


def label_params(**overrides: Any) -> dict[str, Any]:
    """A ``labels`` config section for the anthropic source, with ``overrides``."""
    values = {
        "source": "anthropic",
        "model": "claude-sonnet-4-6",
        "max_tokens": 16000,
        "temperature": None,
        "window_chunks": 400,
        "context_chunks": None,
        "max_reasks": 2,
        "on_invalid": "fail",
    }
    return {**values, **overrides}


@contextmanager
def fake_api(
    records: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeServer]:
    """A fake Messages API on 127.0.0.1 answering with ``records``' labels; the SDK's base URL
    and key point at it while the block runs."""
    with FakeServer(catalog(records)) as fake:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", DUMMY_KEY)
        yield fake
