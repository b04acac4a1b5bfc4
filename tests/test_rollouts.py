"""Acquisition: folder, fsspec and parquet sources, exclusions, strictness."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from real_data import (
    PAPER_PROBLEMS,
    QWEN14B_ROLLOUTS,
    REAL_ROLLOUTS,
    SAMPLING_FOLDER,
)

from anchorflow.data.demo import DEMO_PROBLEM_NUMBERS, ROLLOUTS, write_demo_dataset
from anchorflow.data.rollouts import (
    AcquisitionError,
    acquire,
    check_usable,
    normalise_trace,
    requested_traces,
)
from anchorflow.data.sources import parquet_files, read_parquet_files, read_tree_files


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    write_demo_dataset(root, seed=0)
    return root


def demo_requests():
    return requested_traces([ROLLOUTS], DEMO_PROBLEM_NUMBERS, ["correct", "incorrect"])


def export_parquet(root: Path, destination: Path, rows_per_group: int = 7) -> None:
    """The datasets-compatible export of a folder, as the dataset's push script builds it."""
    rows = []
    for file in sorted(root.rglob("*")):
        if file.is_file():
            relative = file.relative_to(root).as_posix()
            rows.append(
                {
                    "path": relative,
                    "filename": file.name,
                    "extension": file.suffix.lower(),
                    "size_bytes": file.stat().st_size,
                    "content": file.read_text(encoding="utf-8"),
                }
            )
    rows.append(  # an unneeded rollout file, as the real export holds thousands
        {
            "path": "zzz/chunk_0/solutions.json",
            "filename": "solutions.json",
            "extension": ".json",
            "size_bytes": 2,
            "content": "[]",
        }
    )
    destination.mkdir(parents=True, exist_ok=True)
    half = len(rows) // 2
    for shard, part in enumerate((rows[:half], rows[half:])):
        pq.write_table(
            pa.Table.from_pylist(part),
            destination / f"default-{shard:05d}-of-00002.parquet",
            row_group_size=rows_per_group,
        )


def test_demo_traces_are_all_usable(demo_root: Path) -> None:
    records, exclusions = acquire(str(demo_root), demo_requests())
    assert exclusions == []
    assert [record["trace"] for record in records[:2]] == ["101_correct", "101_incorrect"]
    assert len(records) == 10
    for record in records:
        assert 20 <= len(record["chunks"]) <= 60
        assert [label["chunk_idx"] for label in record["labels"]] == list(
            range(len(record["chunks"]))
        )


def test_committed_demo_dataset_is_the_generators_output(demo_root: Path) -> None:
    committed = Path(__file__).resolve().parents[1] / "demo" / "math-rollouts"
    generated = sorted(p.relative_to(demo_root) for p in demo_root.rglob("*") if p.is_file())
    assert generated == sorted(
        p.relative_to(committed) for p in committed.rglob("*") if p.is_file()
    )
    for relative in generated:
        assert (committed / relative).read_bytes() == (demo_root / relative).read_bytes(), relative


def test_fsspec_source_reads_only_the_requested_files(demo_root: Path) -> None:
    memory = fsspec.filesystem("memory")
    for file in demo_root.rglob("*.json"):
        memory.pipe(f"/mirror/{file.relative_to(demo_root).as_posix()}", file.read_bytes())
    request = demo_requests()[0]
    wanted = [f"{request.folder(SAMPLING_FOLDER)}/{name}" for name in ("problem.json", "x.json")]
    contents = read_tree_files("memory://mirror", wanted)
    assert json.loads(contents[wanted[0]])["gt_answer"]
    assert contents[wanted[1]] is None
    records, _ = acquire("memory://mirror", demo_requests())
    assert records == acquire(str(demo_root), demo_requests())[0]


def test_parquet_source_equals_folder_source_on_demo(demo_root: Path, tmp_path: Path) -> None:
    export_parquet(demo_root, tmp_path / "data")
    from_folder = acquire(str(demo_root), demo_requests())
    from_parquet = acquire(str(tmp_path / "data"), demo_requests(), source_format="parquet")
    assert from_parquet == from_folder
    glob = acquire(
        str(tmp_path / "data" / "default-*.parquet"), demo_requests(), source_format="parquet"
    )
    assert glob == from_folder


def test_parquet_reader_skips_row_groups_without_wanted_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 100 row groups of 10 files of 50 kB each; one wanted file: reading only its row group
    # (and the footer and path statistics) touches a small part of the 5 MB export.
    rows = [{"path": f"f{i:04d}.json", "content": "x" * 50_000} for i in range(1000)]
    rows[500]["content"] = "wanted"
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer, row_group_size=10, compression="none")
    memory = fsspec.filesystem("memory")
    memory.pipe("/export/default-0.parquet", buffer.getvalue())
    bytes_read = []
    original_open = MemoryFileSystem._open

    class CountingFile(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            data = super().read(size)
            bytes_read.append(len(data))
            return data

        def readinto(self, target) -> int:  # noqa: ANN001
            count = super().readinto(target)
            bytes_read.append(count)
            return count

    def counting_open(self, path, mode="rb", **kwargs):  # noqa: ANN001, ANN202
        return CountingFile(original_open(self, path, mode, **kwargs).read())

    monkeypatch.setattr(MemoryFileSystem, "_open", counting_open)
    contents = read_parquet_files("memory://export", ["f0500.json", "absent.json"])
    assert contents == {"f0500.json": "wanted", "absent.json": None}
    assert 0 < sum(bytes_read) < len(buffer.getvalue()) / 10


def test_parquet_source_equals_folder_source_on_real_sample(tmp_path: Path) -> None:
    export_parquet(REAL_ROLLOUTS, tmp_path / "data", rows_per_group=11)
    requests = requested_traces([QWEN14B_ROLLOUTS], PAPER_PROBLEMS, ["correct", "incorrect"])
    from_folder, excluded_folder = acquire(str(REAL_ROLLOUTS), requests)
    from_parquet, excluded_parquet = acquire(
        str(tmp_path / "data"), requests, source_format="parquet"
    )
    assert excluded_folder == excluded_parquet == []
    assert len(from_folder) == 20
    assert from_parquet == from_folder
    lengths = {(r["problem"], r["correctness"]): len(r["labels"]) for r in from_folder}
    assert lengths[(4682, "correct")] == 145 and lengths[(6596, "correct")] == 233
    assert sum(lengths.values()) == 2885


def test_bad_traces_are_excluded_with_reasons_and_nothing_else_is_lost(
    demo_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "broken"
    shutil.copytree(demo_root, root)
    folders = {r.trace: root / r.folder(SAMPLING_FOLDER) for r in demo_requests()}
    stub = {"prompt": "p", "solution": "Error: 'text'", "error": "'text'"}
    (folders["101_correct"] / "base_solution.json").write_text(json.dumps(stub))
    text = (folders["102_incorrect"] / "chunks_labeled.json").read_text()
    (folders["102_incorrect"] / "chunks_labeled.json").write_text(text[: len(text) // 2])
    (folders["103_correct"] / "problem.json").unlink()
    base = json.loads((folders["104_correct"] / "base_solution.json").read_text())
    base["full_cot"] = ""
    (folders["104_correct"] / "base_solution.json").write_text(json.dumps(base))
    labeled = json.loads((folders["105_incorrect"] / "chunks_labeled.json").read_text())
    labeled[3]["chunk"] = labeled[3]["chunk"] + " Extra words."
    (folders["105_incorrect"] / "chunks_labeled.json").write_text(json.dumps(labeled))

    records, exclusions = acquire(str(root), demo_requests())
    reasons = {exclusion.trace: exclusion.reason for exclusion in exclusions}
    assert reasons == {
        "101_correct": "error_stub",
        "102_incorrect": "unparsable_json",
        "103_correct": "missing_file",
        "104_correct": "error_stub",
        "105_incorrect": "chunks_disagree",
    }
    intact, _ = acquire(str(demo_root), demo_requests())
    expected = [record for record in intact if record["trace"] not in reasons]
    assert records == expected
    assert len(records) + len(exclusions) == len(demo_requests())
    check_usable(records, exclusions, strict=False)
    with pytest.raises(AcquisitionError, match="5 requested trace.*101_correct: error_stub"):
        check_usable(records, exclusions, strict=True)
    with pytest.raises(AcquisitionError, match="no usable trace"):
        check_usable([], exclusions, strict=False)


def test_bad_bytes_and_bad_dataset_labels_are_excluded_at_acquisition(
    demo_root: Path, tmp_path: Path
) -> None:
    """Non-UTF-8 bytes are never decoded into U+FFFD, and dataset labels with an unknown tag
    or a string for ``function_tags`` are caught here, listed in ``excluded.tsv``, not later."""
    root = tmp_path / "broken"
    shutil.copytree(demo_root, root)
    folders = {r.trace: root / r.folder(SAMPLING_FOLDER) for r in demo_requests()}
    solution = folders["101_correct"] / "base_solution.json"
    data = solution.read_bytes()
    cut = data.index(b"full_cot") + 20
    solution.write_bytes(data[:cut] + b"\xff\xfe" + data[cut:])
    for trace, bad_tags in [("102_correct", ["brainstorming"]), ("103_correct", "plan_generation")]:
        labels_file = folders[trace] / "chunks_labeled.json"
        labeled = json.loads(labels_file.read_text())
        labeled[2]["function_tags"] = bad_tags
        labels_file.write_text(json.dumps(labeled))

    records, exclusions = acquire(str(root), demo_requests())
    reasons = {exclusion.trace: exclusion.reason for exclusion in exclusions}
    assert reasons == {
        "101_correct": "not_utf8",
        "102_correct": "bad_labels",
        "103_correct": "bad_labels",
    }
    details = {exclusion.trace: exclusion.detail for exclusion in exclusions}
    assert "byte" in details["101_correct"] and "brainstorming" in details["102_correct"]
    assert len(records) + len(exclusions) == len(demo_requests())
    assert not any("\ufffd" in record["full_cot"] for record in records)


def test_missing_optional_chunks_json_is_fine_and_a_wrong_one_is_not(demo_root: Path) -> None:
    request = demo_requests()[0]
    folder = demo_root / request.folder(SAMPLING_FOLDER)
    files = {p.name: p.read_text() for p in folder.glob("*.json")}
    assert "chunks.json" in files
    with_chunks = normalise_trace(request, files)
    assert with_chunks["chunks_source"] == "chunks.json"
    without = normalise_trace(request, {k: v for k, v in files.items() if k != "chunks.json"})
    assert without["chunks"] == with_chunks["chunks"]
    chunks = json.loads(files["chunks.json"])
    chunks["chunks"] = chunks["chunks"][:-1]
    from anchorflow.data.rollouts import TraceDataError

    with pytest.raises(TraceDataError, match="chunks.json differs"):
        normalise_trace(request, {**files, "chunks.json": json.dumps(chunks)})


def test_hf_source_is_resolved_lazily_without_contacting_the_hub() -> None:
    filesystem, root = fsspec.core.url_to_fs("hf://datasets/uzaymacar/math-rollouts")
    assert type(filesystem).__name__ == "HfFileSystem"
    assert root == "datasets/uzaymacar/math-rollouts"


def test_source_fingerprint_follows_local_content_only(demo_root: Path, tmp_path: Path) -> None:
    from anchorflow.data.rollouts import source_fingerprint

    requests = demo_requests()
    copy = tmp_path / "copy"
    shutil.copytree(demo_root, copy)
    before = source_fingerprint(str(copy), requests, SAMPLING_FOLDER, "tree")
    assert before == source_fingerprint(str(demo_root), requests, SAMPLING_FOLDER, "tree")
    problem = copy / requests[3].folder(SAMPLING_FOLDER) / "problem.json"
    problem.write_text(problem.read_text().replace("marbles", "pebbles"))
    assert source_fingerprint(str(copy), requests, SAMPLING_FOLDER, "tree") != before
    remote = source_fingerprint(
        "hf://datasets/uzaymacar/math-rollouts", requests, SAMPLING_FOLDER, "tree"
    )
    assert remote != source_fingerprint(
        "hf://datasets/uzaymacar/math-rollouts@v2", requests, SAMPLING_FOLDER, "tree"
    )


def test_parquet_files_are_the_same_for_reader_and_fingerprint(
    demo_root: Path, tmp_path: Path
) -> None:
    export_parquet(demo_root, tmp_path / "data")
    filesystem = fsspec.filesystem("file")
    every = parquet_files(filesystem, str(tmp_path / "data"))
    assert len(every) == 2 and every == sorted(every)
    assert parquet_files(filesystem, str(tmp_path / "data" / "default-*.parquet")) == every
    assert parquet_files(filesystem, every[0]) == [every[0]]
    assert parquet_files(filesystem, str(tmp_path / "absent.parquet")) == []
    with pytest.raises(FileNotFoundError, match="no parquet files"):
        read_parquet_files(str(tmp_path / "absent.parquet"), ["x.json"])
