"""Deterministic, atomic file writers and readers shared by every stage.

Every intermediate file is written to a temporary sibling and renamed into place, so a
killed job never leaves a partial file that looks complete. JSON is written with sorted
keys and no timestamps; ``.npz`` files carry their parameters as a JSON string under the
key ``metadata``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PathLike = str | os.PathLike[str]
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".part", dir=target.parent
    )
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as stream:
            os.fsync(stream.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def dumps_json(obj: Any) -> str:
    """Canonical JSON: sorted keys, two-space indent, UTF-8 characters kept, trailing newline."""
    return (
        json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, default=_json_default) + "\n"
    )


def write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as canonical JSON, atomically."""
    write_text(path, dumps_json(obj))


def read_json(path: PathLike) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def write_jsonl(path: PathLike, rows: list[Mapping[str, Any]]) -> None:
    """Write one canonical (single-line, sorted-key) JSON object per line, atomically."""
    lines = [
        json.dumps(row, sort_keys=True, ensure_ascii=False, default=_json_default) for row in rows
    ]
    write_text(path, "".join(line + "\n" for line in lines))


def read_jsonl(path: PathLike) -> list[dict[str, Any]]:
    """Read a JSON-lines file."""
    with open(path, encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def write_tsv(path: PathLike, frame: pd.DataFrame, float_format: str = "%.9g") -> None:
    """Write a DataFrame as a tab-separated file without index, atomically."""
    buffer = io.StringIO()
    frame.to_csv(buffer, sep="\t", index=False, float_format=float_format, lineterminator="\n")
    write_text(path, buffer.getvalue())


def write_csv(path: PathLike, frame: pd.DataFrame, float_format: str = "%.9g") -> None:
    """Write a DataFrame as a comma-separated file without index, atomically."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format=float_format, lineterminator="\n")
    write_text(path, buffer.getvalue())


def read_tsv(path: PathLike) -> pd.DataFrame:
    """Read a tab-separated file written by :func:`write_tsv`."""
    return pd.read_csv(path, sep="\t", keep_default_na=True)


def write_npz(path: PathLike, metadata: Mapping[str, Any], **arrays: np.ndarray) -> None:
    """Write arrays plus a JSON ``metadata`` entry to a compressed ``.npz``, atomically.

    ``np.savez_compressed`` stores no timestamps of its own beyond the zip entries, which
    we fix by writing through an in-memory buffer with a constant date.
    """
    if "metadata" in arrays:
        raise ValueError("'metadata' is reserved for the JSON parameter record")
    buffer = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        entries = dict(arrays)
        entries["metadata"] = np.array(dumps_json(dict(metadata)))
        for name in sorted(entries):
            array_buffer = io.BytesIO()
            np.lib.format.write_array(
                array_buffer, np.asanyarray(entries[name]), allow_pickle=False
            )
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, array_buffer.getvalue())
    write_bytes(path, buffer.getvalue())


def read_npz(path: PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read an ``.npz`` written by :func:`write_npz`; return ``(arrays, metadata)``."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files if name != "metadata"}
        metadata = json.loads(str(data["metadata"])) if "metadata" in data.files else {}
    return arrays, metadata


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A GitHub Markdown table of ``frame`` without its index (``DataFrame.to_markdown``):
    floats formatted by ``floatfmt``, NaN as an empty cell, ``|`` in text escaped."""
    cells = frame.apply(
        lambda column: (
            column.str.replace("|", "\\|", regex=False)
            if pd.api.types.is_string_dtype(column)
            else column
        )
    )
    cells = cells.astype(object).where(cells.notna(), None)
    markdown = cells.to_markdown(index=False, tablefmt="github", floatfmt=floatfmt, missingval="")
    return markdown + "\n"
