"""Agreement metrics (kappa by hand and against scikit-learn) and the report from fake-server
labels."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from labels_support import fake_api, label_params, real_records

from anchorflow.io import read_tsv
from anchorflow.labels.agreement import (
    cohen_kappa,
    confusion_frame,
    paired_first_tags,
    per_category,
    write_agreement_report,
)
from anchorflow.labels.cache import ResponseCache
from anchorflow.labels.client import Api, RetryPolicy
from anchorflow.labels.labeller import Settings, WindowLabeller, anthropic_label_document
from anchorflow.taxonomy import TAGS


def test_kappa_hand_computed():
    # 10 items; matrix rows A,B = [[4,1],[2,3]]: po = 0.7, pe = (5*6 + 5*4)/100 = 0.5
    reference = ["A"] * 5 + ["B"] * 5
    other = ["A"] * 4 + ["B"] + ["A"] * 2 + ["B"] * 3
    assert cohen_kappa(reference, other) == pytest.approx((0.7 - 0.5) / 0.5)
    assert cohen_kappa(reference, reference) == 1.0
    assert cohen_kappa(["A", "A"], ["A", "A"]) == 1.0
    with pytest.raises(ValueError):
        cohen_kappa(["A"], [])


def doc(trace, tags):
    chunks = [{"chunk_idx": i, "function_tags": [t]} for i, t in tags.items()]
    return {"rollouts": "r", "trace": trace, "chunks": chunks}


def test_pairs_by_chunk_idx_and_counts_unmatched():
    reference = [
        doc("1_correct", {0: "plan_generation", 1: "active_computation", 2: "self_checking"})
    ]
    other = [
        doc("1_correct", {1: "active_computation", 2: "fact_retrieval", 5: "unknown"}),
        doc("2_correct", {0: "unknown"}),
    ]
    pairs, unmatched = paired_first_tags(reference, other)
    assert pairs.to_dict("records") == [
        {
            "trace": "1_correct",
            "chunk_idx": 1,
            "reference": "active_computation",
            "other": "active_computation",
        },
        {
            "trace": "1_correct",
            "chunk_idx": 2,
            "reference": "self_checking",
            "other": "fact_retrieval",
        },
    ]
    assert unmatched == {"only_reference": 1, "only_other": 2}
    table = per_category(pairs).set_index("category")
    assert table.loc["active_computation", ["precision", "recall"]].tolist() == [1.0, 1.0]
    assert table.loc["self_checking", "recall"] == 0.0
    assert np.isnan(table.loc["self_checking", "precision"])
    # sklearn's F1 = 2 TP / (2 TP + FP + FN): 0 for a tag on one side only, NaN on neither side
    assert table.loc["self_checking", "f1"] == 0.0 and table.loc["fact_retrieval", "f1"] == 0.0
    assert np.isnan(table.loc["plan_generation", "f1"])
    assert table.loc["fact_retrieval", "support_other"] == 1
    frame = confusion_frame(pairs)
    assert frame["count"].sum() == 2 and len(frame) == len(TAGS) ** 2


def test_report_renders_from_fake_server_labels(tmp_path, monkeypatch):
    records = real_records()[:4]
    params = label_params(max_reasks=1)
    log = logging.getLogger("test")

    def unknown_tag_on_trace_two(trace: int, seen: int, n_targets: int) -> str | None:
        return "unknown_tag" if trace == 1 else None

    with fake_api(records, monkeypatch) as fake:
        fake.state.fault = unknown_tag_on_trace_two  # persistent: its chunk 0 ends up 'unknown'
        api = Api(RetryPolicy(1, 0.001, 0.001), timeout_s=10, log=log)
        labeller = WindowLabeller(
            Settings.from_params({**params, "on_invalid": "unknown"}),
            api,
            ResponseCache(tmp_path / "c"),
            log,
        )
        documents = [anthropic_label_document(r, params, labeller) for r in records]
    outputs = {
        name: str(tmp_path / "agreement" / file)
        for name, file in [
            ("png", "confusion.png"),
            ("pdf", "confusion.pdf"),
            ("data", "confusion_data.csv"),
            ("per_category", "per_category.tsv"),
            ("kappa", "kappa.json"),
        ]
    }
    summary = write_agreement_report(records, documents, outputs, "deepseek-r1-distill-qwen-14b")
    n_chunks = sum(len(d["chunks"]) for d in documents)
    n_unknown = 1  # the fake always sends a bad tag for the first chunk of the second trace
    assert documents[1]["report"] == {"n_invalid_unknown": 1, "invalid_unknown": [0]}
    assert documents[1]["chunks"][0]["function_tags"] == ["unknown"]
    assert summary["n_chunks"] == n_chunks and summary["n_only_dataset"] == 0
    assert summary["accuracy_first_tag"] == pytest.approx((n_chunks - n_unknown) / n_chunks)
    assert 0 < summary["cohen_kappa_first_tag"] < 1
    assert json.loads((tmp_path / "agreement" / "kappa.json").read_text()) == summary
    data = pd.read_csv(outputs["data"])
    assert data["count"].sum() == n_chunks
    assert data.loc[data["other"] == "unknown", "count"].sum() == n_unknown
    table = read_tsv(outputs["per_category"])
    assert list(table["category"]) == list(TAGS)
    for name in ("png", "pdf"):
        assert (tmp_path / "agreement" / f"confusion.{name}").stat().st_size > 1000
