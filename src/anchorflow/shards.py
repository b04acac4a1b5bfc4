"""Shards of traces for the model stages: one process and one model load per shard.

A trace's shard is a stable hash of its id modulo the stage's shard count, so adding a trace
changes only the shard it joins. A shard job computes its traces one at a time; each result is
first written atomically to a content-keyed store outside the job's outputs (the key hashes
everything the result depends on), then linked into the shard's folder. A killed shard thus
keeps every trace it had finished: its rerun takes them from the store (after checking that
they load) and computes only the rest. A failing trace fails its shard with its id named.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from anchorflow.data.rollouts import get_record
from anchorflow.io import atomic_path, read_npz


def shard_of(item: str, n_shards: int) -> int:
    """The shard of ``item``: the first 8 bytes of its SHA-256, modulo ``n_shards``."""
    if n_shards < 1:
        raise ValueError(f"the shard count must be positive, got {n_shards}")
    digest = hashlib.sha256(item.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n_shards


def shard_members(items: Iterable[str], shard: int, n_shards: int) -> list[str]:
    """The items of one shard, in their given order."""
    return [item for item in items if shard_of(item, n_shards) == shard]


def used_shards(items: Iterable[str], n_shards: int) -> list[int]:
    """The shards that hold at least one item, sorted."""
    return sorted({shard_of(item, n_shards) for item in items})


def result_key(payload: Mapping[str, Any]) -> str:
    """A hex key of everything a result depends on (JSON with sorted keys, SHA-256)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_digest() -> str:
    """SHA-256 of the installed ``anchorflow`` package's Python sources (a code change
    invalidates every stored result)."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def model_signature(spec: Mapping[str, Any]) -> dict[str, Any]:
    """What identifies a model's weights for the store: the spec, and for a local folder or
    file the name, size and modification time of each file (a rebuilt model is new)."""
    signature: dict[str, Any] = {key: spec[key] for key in sorted(spec) if key != "path"}
    path = spec.get("path")
    if path:
        location = Path(path).expanduser()
        files = sorted(location.rglob("*")) if location.is_dir() else [location]
        signature["files"] = [
            (
                str(f.relative_to(location)) if location.is_dir() else f.name,
                f.stat().st_size,
                f.stat().st_mtime_ns,
            )
            for f in files
            if f.is_file()
        ]
    return signature


def traces_by_tokens_file(traces: Sequence[str], paths: Sequence[str]) -> dict[str, str]:
    """``{trace: tokens file}``, checking that each file is named after its trace."""
    files = dict(zip(traces, paths, strict=True))
    for trace, path in files.items():
        if Path(path).stem != trace:
            raise ValueError(f"tokens file {path} does not belong to trace {trace}")
    return files


def trace_keys(
    common: Mapping[str, Any], tokens_files: Mapping[str, str], texts: Mapping[str, str]
) -> dict[str, str]:
    """Each trace's :func:`result_key`: ``common`` (stage, parameters, model, code) plus the
    trace id, the digest of its tokens file and of its text."""
    return {
        trace: result_key(
            {
                **common,
                "trace": trace,
                "tokens": file_digest(path),
                "text": hashlib.sha256(texts[trace].encode("utf-8")).hexdigest(),
            }
        )
        for trace, path in tokens_files.items()
    }


def shard_traces(
    stage: str,
    parameters: Mapping[str, Any],
    spec: Mapping[str, Any],
    traces: Sequence[str],
    tokens_paths: Sequence[str],
    records_path: str,
    **extra: Any,
) -> tuple[dict[str, str], dict[str, dict[str, Any]], dict[str, str]]:
    """What a sharded model job needs per trace: its tokens file, its record and its store key
    (stage, parameters, model signature, package code and ``extra``, plus the trace's own
    inputs; :func:`trace_keys`)."""
    tokens_files = traces_by_tokens_file(traces, tokens_paths)
    records = {trace: get_record(records_path, spec["rollouts"], trace) for trace in traces}
    common = {
        "stage": stage,
        "params": parameters,
        "model": model_signature(spec),
        "code": package_digest(),
        **extra,
    }
    texts = {trace: record["full_cot"] for trace, record in records.items()}
    return tokens_files, records, trace_keys(common, tokens_files, texts)


def npz_loads(path: Path) -> bool:
    """Whether a stored ``.npz`` result reads back (a store entry's validity check)."""
    try:
        read_npz(path)
    except Exception:
        return False
    return True


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as temporary:
        temporary.unlink()
        try:
            os.link(source, temporary)
        except OSError:
            temporary.write_bytes(source.read_bytes())


def run_shard(
    items: Sequence[str],
    keys: Mapping[str, str],
    out_dir: str | Path,
    store: str | Path,
    compute: Callable[[str, Path], None],
    is_valid: Callable[[Path], bool],
    suffix: str = ".npz",
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """Produce ``out_dir/{item}{suffix}`` for every item; return ``{item: "stored" | "computed"}``.

    ``compute(item, path)`` writes one item's result to ``path``; ``keys[item]`` is its
    :func:`result_key`; ``is_valid(path)`` checks a stored result (e.g. that it loads).
    """
    out, stored = Path(out_dir), Path(store)
    stored.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    origin: dict[str, str] = {}
    for item in tqdm(items, desc="shard", unit="trace"):
        cached = stored / f"{keys[item]}{suffix}"
        if cached.is_file() and is_valid(cached):
            origin[item] = "stored"
        else:
            try:
                with atomic_path(cached) as temporary:
                    compute(item, temporary)
            except Exception as error:
                raise RuntimeError(f"shard failed on {item}: {error}") from error
            origin[item] = "computed"
        _link_or_copy(cached, out / f"{item}{suffix}")
        log(f"{item}: {origin[item]} ({cached.name})")
    return origin
