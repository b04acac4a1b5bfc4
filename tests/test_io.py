"""Atomic, deterministic writers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anchorflow.io import markdown_table, read_json, read_npz, write_json, write_npz, write_tsv


def test_npz_is_byte_identical_across_writes_and_round_trips(tmp_path: Path) -> None:
    scores = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    write_npz(tmp_path / "a.npz", {"model": "m", "k": 3}, vertical_scores=scores)
    os.utime(tmp_path, (1, 1))
    write_npz(tmp_path / "b.npz", {"k": 3, "model": "m"}, vertical_scores=scores)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    arrays, metadata = read_npz(tmp_path / "a.npz")
    assert metadata == {"model": "m", "k": 3}
    np.testing.assert_array_equal(arrays["vertical_scores"], scores)
    assert arrays["vertical_scores"].dtype == np.float32


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_json(target, {"v": 1})

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        write_json(target, {"v": Unserialisable()})
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_written_files_get_ordinary_permissions(tmp_path: Path) -> None:
    write_json(tmp_path / "x.json", {})
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_json_and_tsv_are_canonical(tmp_path: Path) -> None:
    write_json(tmp_path / "x.json", {"b": np.float32(0.5), "a": [np.int64(1)]})
    assert (tmp_path / "x.json").read_text() == '{\n  "a": [\n    1\n  ],\n  "b": 0.5\n}\n'
    write_tsv(tmp_path / "x.tsv", pd.DataFrame({"layer": [1], "kurtosis": [1 / 3]}))
    assert (tmp_path / "x.tsv").read_text() == "layer\tkurtosis\n1\t0.333333333\n"


def test_markdown_table_formats_floats_missing_values_and_pipes() -> None:
    frame = pd.DataFrame(
        {"condition": ["a|b", "base"], "accuracy": [0.5, float("nan")], "n": [3, 4]}
    )
    assert markdown_table(frame).splitlines() == [
        "| condition   |   accuracy |   n |",
        "|-------------|------------|-----|",
        "| a\\|b        |      0.500 |   3 |",
        "| base        |            |   4 |",
    ]
    assert "| 1.235 |" in markdown_table(pd.DataFrame({"t": [1.23456]}), floatfmt=".4g")
