"""Acquisition of math-rollouts traces into normalised records.

Three sources, one code path after the raw files are read (method reference §2):

- ``tree``: the dataset's raw per-file layout — ``hf://datasets/uzaymacar/math-rollouts[@revision]``
  through the hub cache (:mod:`anchorflow.data.hub`: only the files a trace needs are fetched,
  never the 19.6 GB nor a listing of it, and a rerun with ``HF_HUB_OFFLINE=1`` reads the cache),
  any other fsspec URL, or a local folder;
- ``parquet``: the datasets-compatible export (columns ``path, filename, extension, size_bytes,
  content``), read with column projection and row filtering: row groups whose ``path`` statistics
  exclude every wanted file are skipped, and ``content`` is decoded only for row groups that hold a
  wanted file.

Each usable trace becomes one record (format in ``docs/DEVELOPING.md``). Unusable traces are
returned as exclusions with a reason; nothing is dropped without being listed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd

from anchorflow.data.hub import read_hub_files
from anchorflow.data.sources import (
    FileText,
    NotUtf8,
    parquet_files,
    read_parquet_files,
    read_tree_files,
)
from anchorflow.hub import parse_hub_url
from anchorflow.io import read_jsonl
from anchorflow.sentences import SentenceLocationError, char_spans, dataset_chunks, split_solution
from anchorflow.taxonomy import TAGS

LOG = logging.getLogger(__name__)


REQUIRED_FILES = ("problem.json", "base_solution.json", "chunks_labeled.json")


OPTIONAL_FILES = ("chunks.json",)


TRACE_FILES = REQUIRED_FILES + OPTIONAL_FILES


CORRECTNESS = ("correct", "incorrect")


class AcquisitionError(RuntimeError):
    """A requested trace is unusable and the run is strict."""


@dataclass(frozen=True)
class TraceRequest:
    """One requested trace: a problem's correct or incorrect base solution in a rollouts folder."""

    rollouts: str
    problem: int
    correctness: str

    @property
    def trace(self) -> str:
        return trace_id(self.problem, self.correctness)

    def folder(self, sampling_folder: str) -> str:
        """Path of the trace's folder relative to the dataset root."""
        return (
            f"{self.rollouts}/{sampling_folder}/{self.correctness}_base_solution/"
            f"problem_{self.problem}"
        )


@dataclass(frozen=True)
class Exclusion:
    """Why a requested trace is unusable."""

    rollouts: str
    trace: str
    problem: int
    correctness: str
    reason: str
    detail: str


class TraceDataError(ValueError):
    """A trace's files are present but unusable; ``reason`` is a short machine-readable tag."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def trace_id(problem: int, correctness: str) -> str:
    """The trace identifier, e.g. ``4682_correct``."""
    if correctness not in CORRECTNESS:
        raise ValueError(f"correctness must be one of {CORRECTNESS}, not {correctness!r}")
    return f"{problem}_{correctness}"


def requested_traces(
    rollouts: Sequence[str], problems: Sequence[int], correctness: Sequence[str]
) -> list[TraceRequest]:
    """Every (rollouts, problem, correctness) combination, sorted (correct first)."""
    return [
        TraceRequest(folder, problem, kind)
        for folder in sorted(rollouts)
        for problem in sorted(problems)
        for kind in sorted(correctness, key=CORRECTNESS.index)
    ]


def _parse(name: str, text: FileText) -> Any:
    if text is None:
        raise TraceDataError("missing_file", f"{name} is missing")
    if isinstance(text, NotUtf8):
        raise TraceDataError("not_utf8", f"{name}: {text.detail}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise TraceDataError("unparsable_json", f"{name}: {error}") from error


def _require(mapping: Any, name: str, keys: Sequence[str], kinds: tuple[type, ...]) -> None:
    if not isinstance(mapping, dict):
        raise TraceDataError("malformed", f"{name} is not a JSON object")
    for key in keys:
        if key not in mapping:
            raise TraceDataError("malformed", f"{name} has no {key!r}")
        if not isinstance(mapping[key], kinds):
            raise TraceDataError(
                "malformed", f"{name}[{key!r}] has type {type(mapping[key]).__name__}"
            )


def _label_row(row: Any, position: int) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise TraceDataError("malformed", f"chunks_labeled.json[{position}] is not an object")
    for key in ("chunk", "chunk_idx", "function_tags"):
        if key not in row:
            raise TraceDataError("malformed", f"chunks_labeled.json[{position}] has no {key!r}")
    try:
        depends_on = sorted({int(value) for value in row.get("depends_on", [])})
    except (TypeError, ValueError) as error:
        raise TraceDataError(
            "malformed", f"chunks_labeled.json[{position}] depends_on: {error}"
        ) from error
    tags = row["function_tags"]
    known = set(TAGS)
    if not isinstance(tags, list) or not tags or not all(tag in known for tag in tags):
        raise TraceDataError(
            "bad_labels",
            f"chunks_labeled.json[{position}] function_tags {tags!r} is not a non-empty list of "
            f"taxonomy tags",
        )
    label = {
        "chunk": row["chunk"],
        "chunk_idx": int(row["chunk_idx"]),
        "function_tags": list(tags),
        "depends_on": depends_on,
    }
    for key, value in row.items():
        if key not in label and isinstance(value, int | float) and not isinstance(value, bool):
            label[key] = float(value)
    return label


def normalise_trace(request: TraceRequest, files: Mapping[str, FileText]) -> dict[str, Any]:
    """Build the normalised record of one trace from its raw file texts (keyed by file name).

    Raises :class:`TraceDataError` when the trace is unusable: a missing or unparsable file, an
    API-error stub (an ``error`` key or an empty ``full_cot``), or chunk lists that disagree with
    the text.
    """
    problem = _parse("problem.json", files.get("problem.json"))
    base = _parse("base_solution.json", files.get("base_solution.json"))
    labeled = _parse("chunks_labeled.json", files.get("chunks_labeled.json"))
    chunks_file = files.get("chunks.json")
    if isinstance(base, dict) and ("error" in base or not base.get("full_cot")):
        detail = str(base.get("error", "empty full_cot"))[:200]
        raise TraceDataError("error_stub", f"base_solution.json is an API-error stub: {detail}")
    _require(problem, "problem.json", ("problem", "gt_answer"), (str,))
    _require(base, "base_solution.json", ("full_cot", "prompt", "solution"), (str,))
    if not isinstance(labeled, list) or not labeled:
        raise TraceDataError("malformed", "chunks_labeled.json is not a non-empty list")
    labels = [_label_row(row, position) for position, row in enumerate(labeled)]
    full_cot = base["full_cot"]
    generated = split_solution(full_cot)
    expected = dataset_chunks(full_cot)
    stored = [label["chunk"] for label in labels]
    if stored != expected:
        first = next(
            (i for i, (a, b) in enumerate(zip(stored, expected, strict=False)) if a != b),
            min(len(stored), len(expected)),
        )
        raise TraceDataError(
            "chunks_disagree",
            f"chunks_labeled.json ({len(stored)} chunks) differs from the text's split "
            f"({len(expected)} chunks) from chunk {first}",
        )
    chunks_source = "chunks_labeled.json"
    chunks = generated
    if chunks_file is not None:
        chunk_data = _parse("chunks.json", chunks_file)
        _require(chunk_data, "chunks.json", ("chunks",), (list,))
        if chunk_data["chunks"] != generated:
            raise TraceDataError("chunks_disagree", "chunks.json differs from the text's split")
        chunks_source = "chunks.json"
    for label in labels:
        index = label["chunk_idx"]
        if not 0 <= index < len(chunks) or chunks[index] != label["chunk"]:
            raise TraceDataError(
                "chunks_disagree", f"chunk_idx {index} does not point at its chunk text"
            )
    try:
        char_spans(full_cot, generated)
    except SentenceLocationError as error:
        raise TraceDataError("sentences_unlocated", str(error)) from error
    return {
        "rollouts": request.rollouts,
        "trace": request.trace,
        "problem": request.problem,
        "correctness": request.correctness,
        "problem_text": problem["problem"],
        "level": str(problem.get("level", "")),
        "type": str(problem.get("type", "")),
        "gt_answer": problem["gt_answer"],
        "prompt": base["prompt"],
        "solution": base["solution"],
        "full_cot": full_cot,
        "answer": str(base.get("answer", "")),
        "is_correct": bool(base.get("is_correct", request.correctness == "correct")),
        "chunks": chunks,
        "chunks_source": chunks_source,
        "labels": labels,
    }


def acquire(
    source: str,
    requests: Sequence[TraceRequest],
    sampling_folder: str = "temperature_0.6_top_p_0.95",
    source_format: str = "tree",
) -> tuple[list[dict[str, Any]], list[Exclusion]]:
    """Read and normalise every requested trace; return ``(records, exclusions)``.

    ``len(records) + len(exclusions) == len(requests)`` always.
    """
    from tqdm import tqdm

    wanted = {
        request: {name: f"{request.folder(sampling_folder)}/{name}" for name in TRACE_FILES}
        for request in requests
    }
    all_paths = [path for names in wanted.values() for path in names.values()]
    hub_location = parse_hub_url(source) if source_format == "tree" else None
    if hub_location is not None:
        contents = read_hub_files(hub_location, tqdm(all_paths, desc="files", unit="file"))
    elif source_format == "tree":
        contents = read_tree_files(source, tqdm(all_paths, desc="files", unit="file"))
    elif source_format == "parquet":
        contents = read_parquet_files(source, all_paths)
    else:
        raise ValueError(f"unknown dataset format {source_format!r}")
    records: list[dict[str, Any]] = []
    exclusions: list[Exclusion] = []
    for request in requests:
        files = {name: contents.get(path) for name, path in wanted[request].items()}
        try:
            records.append(normalise_trace(request, files))
        except TraceDataError as error:
            LOG.warning("excluded %s/%s: %s", request.rollouts, request.trace, error)
            exclusions.append(
                Exclusion(
                    request.rollouts,
                    request.trace,
                    request.problem,
                    request.correctness,
                    error.reason,
                    error.detail,
                )
            )
    return records, exclusions


def check_usable(
    records: Sequence[Any],
    exclusions: Sequence[Exclusion],
    strict: bool,
    listing: str = "excluded.tsv",
) -> None:
    """Raise :class:`AcquisitionError` when nothing is usable, or anything is not and ``strict``;
    ``listing`` names the file that already lists the exclusions."""
    if exclusions and strict:
        reasons = "; ".join(f"{e.rollouts}/{e.trace}: {e.reason} ({e.detail})" for e in exclusions)
        raise AcquisitionError(
            f"dataset.strict is set and {len(exclusions)} requested trace(s) are unusable: "
            f"{reasons} (listed in {listing})"
        )
    if not records:
        raise AcquisitionError(f"no usable trace among {len(exclusions)} requested: see {listing}")


def source_fingerprint(
    source: str, requests: Sequence[TraceRequest], sampling_folder: str, source_format: str
) -> str:
    """A short digest of what a local source holds for ``requests``, for cache keys and reruns.

    It names files relative to the source, so two checkouts of the same data agree.

    Local folders: the bytes of every requested trace file present. Local parquet exports: the
    names and sizes of the parquet files. Remote sources (``hf://``, ...): the URL alone (pin a
    revision with ``@revision``); nothing is contacted.
    """
    remote_digest = hashlib.sha256(f"{source_format}|{source}".encode()).hexdigest()[:16]
    if parse_hub_url(source) is not None:  # no filesystem is built: parsing stays offline
        return remote_digest
    filesystem, root = fsspec.core.url_to_fs(source)
    protocols = filesystem.protocol
    if "file" not in ((protocols,) if isinstance(protocols, str) else protocols):
        return remote_digest
    digest = hashlib.sha256(source_format.encode())
    root = root.rstrip("/")
    if source_format == "parquet":
        for file in parquet_files(filesystem, root):
            digest.update(f"{Path(file).name}|{filesystem.size(file)}".encode())
        return digest.hexdigest()[:16]
    for request in requests:
        for name in TRACE_FILES:
            relative = f"{request.folder(sampling_folder)}/{name}"
            path = f"{root}/{relative}"
            if filesystem.exists(path):
                digest.update(relative.encode())
                digest.update(filesystem.cat_file(path))
    return digest.hexdigest()[:16]


EXCLUSION_COLUMNS = ["rollouts", "trace", "problem", "correctness", "reason", "detail"]


def exclusion_table(exclusions: Sequence[Exclusion]) -> pd.DataFrame:
    """Exclusions as the rows of ``excluded.tsv`` (columns :data:`EXCLUSION_COLUMNS`)."""
    return pd.DataFrame([asdict(e) for e in exclusions], columns=EXCLUSION_COLUMNS)


def read_records(path: str) -> list[dict[str, Any]]:
    """All records of a ``records.jsonl``."""
    return read_jsonl(path)


def get_record(path: str, rollouts: str, trace: str) -> dict[str, Any]:
    """The record of one trace; ``KeyError`` naming it when absent."""
    for record in read_records(path):
        if record["rollouts"] == rollouts and record["trace"] == trace:
            return record
    raise KeyError(f"no record for {rollouts}/{trace} in {path}")
