"""Persistent response cache, written atomically.

Window outcomes live at ``<cache_dir>/<key[:2]>/<key>.json`` where ``key`` is
:func:`anchorflow.labels.prompt.cache_key`. They hold the labels of the window, its token
usage and the number of requests it took, so a rerun costs nothing and still reports usage.

Every reply is also kept as received, before anything else is done with it, at
``<cache_dir>/replies/<request_key[:2]>/<request_key>.json`` (the key hashes the whole request,
re-ask turns included), until its window's outcome is decided: a paid answer is never bought
twice, whatever fails between its arrival and that decision.
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

    @staticmethod
    def _read(path: Path, field: str, key: str) -> dict[str, Any] | None:
        """The JSON object at ``path`` when it is readable and its ``field`` is ``key``."""
        if not path.exists():
            return None
        try:
            entry = read_json(path)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        return entry if isinstance(entry, dict) and entry.get(field) == key else None

    def get(self, key: str) -> dict[str, Any] | None:
        """The entry of ``key``, or None when absent or unreadable (then it is re-fetched)."""
        return self._read(self.path(key), "key", key)

    def put(self, key: str, entry: dict[str, Any]) -> None:
        write_json(self.path(key), {**entry, "key": key})

    def reply_path(self, request_key: str) -> Path:
        return self.directory / "replies" / request_key[:2] / f"{request_key}.json"

    def get_reply(self, request_key: str) -> dict[str, Any] | None:
        """The reply stored for a request, or None when absent or unreadable."""
        entry = self._read(self.reply_path(request_key), "request_key", request_key)
        return entry["message"] if entry else None

    def put_reply(self, request_key: str, message: dict[str, Any]) -> None:
        write_json(self.reply_path(request_key), {"request_key": request_key, "message": message})

    @property
    def batch_dir(self) -> Path:
        """Where submitted batches are recorded (batch id and its requests)."""
        return self.directory / "batches"
