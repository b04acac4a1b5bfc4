"""Raw files of a math-rollouts source, read as text: the per-file tree through fsspec or the
parquet export through pyarrow (only the row groups that can hold a wanted file are read). A file
that is not UTF-8 is kept as a :class:`NotUtf8` marker, never decoded with replacements."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import fsspec


@dataclass(frozen=True)
class NotUtf8:
    """A file whose bytes are not UTF-8: kept as this marker so its trace is excluded with the
    reason ``not_utf8`` (never decoded with replacement characters)."""

    detail: str


FileText = str | NotUtf8 | None


def decode_utf8(data: bytes) -> str | NotUtf8:
    """``data`` decoded as UTF-8, or :class:`NotUtf8` naming the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        return NotUtf8(
            f"byte {error.start} ({data[error.start : error.start + 1]!r}) {error.reason}"
        )


def read_tree_files(source: str, paths: Iterable[str]) -> dict[str, FileText]:
    """Read ``paths`` (relative to ``source``) through fsspec; a missing file is ``None``."""
    filesystem, root = fsspec.core.url_to_fs(source)
    root = root.rstrip("/")
    contents: dict[str, FileText] = {}
    for path in paths:
        full = f"{root}/{path}"
        try:
            with filesystem.open(full, "rb") as stream:
                contents[path] = decode_utf8(stream.read())
        except FileNotFoundError:
            contents[path] = None
    return contents


def parquet_files(filesystem: fsspec.AbstractFileSystem, root: str) -> list[str]:
    """The files of a parquet export at ``root``: every ``.parquet`` file below a folder, the
    matches of a glob, or the one file named (none when it does not exist)."""
    if filesystem.isdir(root):
        return sorted(path for path in filesystem.find(root) if path.endswith(".parquet"))
    if any(character in root for character in "*?["):
        return sorted(filesystem.glob(root))
    return [root] if filesystem.exists(root) else []


def read_parquet_files(source: str, paths: Iterable[str]) -> dict[str, FileText]:
    """Read ``paths`` from the parquet export at ``source`` (file, folder or glob; any fsspec URL).

    ``pyarrow.parquet.read_table`` with the filter ``path in paths``: row groups whose ``path``
    statistics exclude every wanted file are skipped unread, and only ``path`` and ``content``
    are read from the others.
    """
    import pyarrow.parquet as pq

    wanted = sorted(set(paths))
    contents: dict[str, FileText] = dict.fromkeys(wanted)
    if not wanted:
        return contents
    filesystem, root = fsspec.core.url_to_fs(source)
    files = parquet_files(filesystem, root)
    if not files:
        raise FileNotFoundError(f"no parquet files at {source}")
    for file in files:
        names = pq.read_schema(file, filesystem=filesystem).names
        if "path" not in names or "content" not in names:
            raise ValueError(f"{file}: not a math-rollouts parquet export (needs path, content)")
    table = pq.read_table(
        files,
        columns=["path", "content"],
        filters=[("path", "in", wanted)],
        filesystem=filesystem,
    )
    for path, content in zip(
        table.column("path").to_pylist(), table.column("content").to_pylist(), strict=True
    ):
        contents[path] = decode_utf8(content) if isinstance(content, bytes) else content
    return contents
