"""Token usage of Claude's replies: read from a message, summed over requests, tabled per trace."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


def _token_count(value: Any) -> int | None:
    """A token count as an int; None when it is not a finite non-negative number."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number >= 0 else None


def usage_of(message: Mapping[str, Any]) -> dict[str, int]:
    """The four token counts of a response (absent ones are 0). Unreadable counts are 0 and
    listed under ``unreadable_usage`` (a bad count never discards a paid answer)."""
    usage = message.get("usage")
    usage = usage if isinstance(usage, Mapping) else {}
    counts: dict[str, Any] = {}
    unreadable = []
    for name in USAGE_FIELDS:
        count = _token_count(usage.get(name) or 0)
        if count is None:
            unreadable.append(name)
        counts[name] = count or 0
    if unreadable:
        counts["unreadable_usage"] = unreadable
    return counts


def add_usage(*usages: Mapping[str, Any]) -> dict[str, int]:
    """Token counts summed over ``usages`` (the ``unreadable_usage`` notes are dropped)."""
    return {name: sum(int(usage.get(name, 0)) for usage in usages) for name in USAGE_FIELDS}


def usage_table(documents: list[Mapping[str, Any]]) -> pd.DataFrame:
    """Token usage per trace (``rollouts, trace, windows, requests, batch`` and the four token
    counts), from Claude label files."""
    rows = [
        {
            "rollouts": doc["rollouts"],
            "trace": doc["trace"],
            "model": doc["model"],
            **{key: doc["usage"][key] for key in ("windows", "requests", "batch")},
            **{name: doc["usage"][name] for name in USAGE_FIELDS},
        }
        for doc in documents
    ]
    return pd.DataFrame(rows)
