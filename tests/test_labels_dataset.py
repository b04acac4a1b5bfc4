"""The dataset label source: alignment by chunk_idx on the real sample, and bad input."""

from __future__ import annotations

import copy
import logging

import pytest
from labels_support import real_records

from anchorflow.io import read_json, write_jsonl
from anchorflow.labels.dataset import LabelError, dataset_label_document, labelled_chunks
from anchorflow.labels.labeller import label_trace_file
from anchorflow.taxonomy import TAGS


def test_dataset_labels_of_the_real_sample_align_by_chunk_idx(tmp_path):
    records = real_records()
    assert len(records) == 20
    records_file = tmp_path / "records.jsonl"
    write_jsonl(records_file, records)
    for record in records[:3]:
        out = tmp_path / f"{record['trace']}.json"
        label_trace_file(
            str(records_file),
            record["rollouts"],
            record["trace"],
            str(out),
            {"source": "dataset"},
            {},
            logging.getLogger("test"),
        )
        document = read_json(out)
        assert document["source"] == "dataset" and document["model"] is None
        assert document["prompt_version"] is None and document["params"] == {"source": "dataset"}
    for record in records:
        document = dataset_label_document(record, {"source": "dataset"})
        assert [(c["chunk_idx"], c["text"]) for c in document["chunks"]] == labelled_chunks(record)
        for chunk, label in zip(document["chunks"], record["labels"], strict=True):
            assert chunk["text"] == record["chunks"][chunk["chunk_idx"]] == label["chunk"]
            assert chunk["function_tags"] == label["function_tags"]
            assert set(chunk["function_tags"]) <= set(TAGS)
            assert all(isinstance(d, int) and d < chunk["chunk_idx"] for d in chunk["depends_on"])
    # method reference §2.4 example: 4682 correct, chunk 13 plan_generation depending on 12
    record = next(r for r in records if r["trace"] == "4682_correct")
    chunk = dataset_label_document(record, {})["chunks"][13]
    assert chunk["function_tags"] == ["plan_generation"] and chunk["depends_on"] == [12]


def small_record():
    chunks = ["First, read it.", "ok", "Then compute 2+2=4.", "So the answer is 4."]
    labels = [
        {"chunk_idx": 0, "chunk": chunks[0], "function_tags": ["problem_setup"], "depends_on": []},
        {
            "chunk_idx": 2,
            "chunk": chunks[2],
            "function_tags": ["active_computation"],
            "depends_on": ["0"],
        },
        {
            "chunk_idx": 3,
            "chunk": chunks[3],
            "function_tags": ["final_answer_emission"],
            "depends_on": [2],
        },
    ]
    return {"rollouts": "r", "trace": "1_correct", "chunks": chunks, "labels": labels}


def test_short_chunks_are_not_labelled_and_string_dependencies_become_ints():
    record = small_record()
    assert labelled_chunks(record) == [
        (0, "First, read it."),
        (2, "Then compute 2+2=4."),
        (3, "So the answer is 4."),
    ]
    chunks = dataset_label_document(record, {})["chunks"]
    assert [c["chunk_idx"] for c in chunks] == [0, 2, 3] and chunks[1]["depends_on"] == [0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["labels"][1].update(function_tags=["brainstorming"]), "tags"),
        (lambda r: r["labels"][1].update(function_tags=[]), "tags"),
        (lambda r: r["labels"][2].update(chunk_idx=2), "labelled twice"),
        (lambda r: r["labels"][2].update(chunk_idx=9), "outside"),
        (lambda r: r["labels"][2].update(depends_on=["two"]), "non-integer"),
    ],
)
def test_bad_dataset_labels_are_clear_errors(change, message):
    record = copy.deepcopy(small_record())
    change(record)
    with pytest.raises(LabelError, match=message):
        dataset_label_document(record, {})


def test_forward_dependencies_are_kept_and_counted():
    record = small_record()
    record["labels"][1]["depends_on"] = [3]
    document = dataset_label_document(record, {})
    assert document["chunks"][1]["depends_on"] == [3]
    assert document["report"] == {"n_forward_dependencies": 1, "forward_dependencies": [[2, 3]]}
