"""Persistent response cache: one JSON file per window outcome, written atomically.

Entries live at ``<cache_dir>/<key[:2]>/<key>.json`` where ``key`` is
:func:`anchorflow.labels.prompt.cache_key`. They hold the labels of the window, its token
usage and the number of requests it took, so a rerun costs nothing and still reports usage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from anchorflow.io import read_json, write_json


class ResponseCache:
    """A directory of window outcomes keyed by cache key."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The entry of ``key``, or None when absent or unreadable (then it is re-fetched)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            entry = read_json(path)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        return entry if entry.get("key") == key else None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        write_json(self.path(key), {**entry, "key": key})

    @property
    def batch_dir(self) -> Path:
        """Where submitted batches are recorded (batch id and its requests)."""
        return self.directory / "batches"
