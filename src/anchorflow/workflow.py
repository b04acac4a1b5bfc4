"""Glue between rule scripts and the library: logging into the rule's log file."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

ATTEMPT_HEADER = "==== attempt "


def log_to(log_path: str | Path | None, name: str = "anchorflow") -> logging.Logger:
    """Send logging records and ``sys.stderr`` (tqdm progress bars) to ``log_path``.

    The log is appended to, under a header ``==== attempt N ====`` (N counts the headers
    already there), so a retried job keeps the traceback of every failed attempt. With no path
    (standalone use) everything stays on the terminal.
    """
    if log_path:
        path = Path(log_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        earlier = path.read_text(errors="replace").count(ATTEMPT_HEADER) if path.exists() else 0
        sys.stderr = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        sys.stderr.write(f"{ATTEMPT_HEADER}{earlier + 1} ====\n")
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        force=True,
    )
    return logging.getLogger(name)


def code_digest(*modules: str) -> str:
    """A short SHA-256 of the source of ``anchorflow`` modules (e.g. ``"rollouts"``).

    Passed as a rule parameter, it makes a change to the package code a rule runs rerun that rule
    and enter its between-workflow cache key (Snakemake itself only tracks the rule's script).
    """
    import hashlib
    import importlib.util

    digest = hashlib.sha256()
    for name in sorted(modules):
        # The source file is found without importing the module (torch, for the attention
        # stage, would cost every Snakefile parse seconds).
        spec = importlib.util.find_spec(f"anchorflow.{name}")
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f"no module anchorflow.{name}")
        digest.update(name.encode())
        digest.update(Path(spec.origin).read_bytes())
    return digest.hexdigest()[:16]


def export_package_path(
    source_folder: str | Path, environment: MutableMapping[str, str] = os.environ
) -> str:
    """Put ``source_folder`` (the checkout's ``src``) first on ``PYTHONPATH`` in ``environment``.

    The Snakefile calls it, so every job it starts (local, or a cluster job that re-reads the
    Snakefile) imports the workflow's own package, also from a conda env that does not install
    it. Returns the new value; an entry already present is not added twice.
    """
    folder = str(Path(source_folder).resolve())
    entries = [entry for entry in environment.get("PYTHONPATH", "").split(os.pathsep) if entry]
    environment["PYTHONPATH"] = os.pathsep.join([folder, *(e for e in entries if e != folder)])
    return environment["PYTHONPATH"]
