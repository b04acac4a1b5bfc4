"""Label files: the dataset's own labels (``chunks_labeled.json``) and the common file format.

A label file (``labels/{rollouts}/{trace}.json``) lists, per dataset chunk, its ``chunk_idx``
(index into the record's ``chunks``), ``text``, ``function_tags`` and ``depends_on`` (ints),
plus the label ``source``, labeller ``model`` and ``prompt_version``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from anchorflow.taxonomy import MIN_CHUNK_CHARS, TAGS


class LabelError(ValueError):
    """Labels that cannot be attached to their chunks without guessing."""


def labelled_chunks(record: Mapping[str, Any]) -> list[tuple[int, str]]:
    """``(chunk_idx, text)`` of every dataset chunk that gets a label (>= 4 characters)."""
    return [
        (index, text)
        for index, text in enumerate(record["chunks"])
        if len(text.strip()) >= MIN_CHUNK_CHARS
    ]


def _as_index(value: Any, trace: str, chunk_idx: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise LabelError(
            f"{trace}: chunk {chunk_idx} has a non-integer dependency {value!r}"
        ) from error


def dataset_chunk_labels(record: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The dataset's labels of a record as label-file chunks, plus a report of oddities.

    Checks that indices are unique and point into ``record["chunks"]`` and that every tag
    belongs to the taxonomy; forward or self dependencies are kept and counted.
    """
    trace = record["trace"]
    chunks: list[dict[str, Any]] = []
    seen: set[int] = set()
    forward: list[list[int]] = []
    for label in record["labels"]:
        index = int(label["chunk_idx"])
        if index in seen:
            raise LabelError(f"{trace}: chunk_idx {index} is labelled twice")
        if not 0 <= index < len(record["chunks"]):
            raise LabelError(
                f"{trace}: chunk_idx {index} is outside the {len(record['chunks'])} chunks"
            )
        seen.add(index)
        tags = list(label["function_tags"])
        bad = [tag for tag in tags if tag not in TAGS]
        if not tags or bad:
            raise LabelError(f"{trace}: chunk {index} has tags {tags!r}; allowed: {list(TAGS)}")
        depends_on = sorted({_as_index(value, trace, index) for value in label["depends_on"]})
        forward += [[index, dep] for dep in depends_on if dep >= index]
        chunks.append(
            {
                "chunk_idx": index,
                "text": label.get("chunk", record["chunks"][index]),
                "function_tags": tags,
                "depends_on": depends_on,
            }
        )
    chunks.sort(key=lambda chunk: chunk["chunk_idx"])
    report = {"n_forward_dependencies": len(forward), "forward_dependencies": forward}
    return chunks, report


def label_document(
    record: Mapping[str, Any],
    source: str,
    chunks: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    *,
    model: str | None = None,
    prompt_version: str | None = None,
    report: Mapping[str, Any] | None = None,
    usage: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the JSON object of a label file."""
    document: dict[str, Any] = {
        "trace": record["trace"],
        "rollouts": record["rollouts"],
        "source": source,
        "model": model,
        "prompt_version": prompt_version,
        "chunks": [dict(chunk) for chunk in chunks],
        "params": dict(params),
        "report": dict(report or {}),
    }
    if usage is not None:
        document["usage"] = dict(usage)
    return document


def dataset_label_document(record: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The label file of a record from the dataset's own labels."""
    chunks, report = dataset_chunk_labels(record)
    return label_document(record, "dataset", chunks, params, report=report)
