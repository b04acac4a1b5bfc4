"""SHA-256 digests of a run's result files, to prove two runs (or two versions of the code)
wrote byte-identical results.

``python -m anchorflow.digest results/demo --check demo/results.sha256`` compares the demo run
with the committed manifest and lists every file that is missing, unexpected or different;
``--write`` rewrites the manifest. The manifest is in ``sha256sum`` format, so
``(cd results/demo && sha256sum -c ../../demo/results.sha256)`` checks it as well. Logs,
benchmark and timing records, the sharded stages' result store (keyed by model file times)
and the HTML report (it embeds run dates) are left out: they legitimately differ between
identical runs.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from anchorflow.io import write_text

VOLATILE_DIRS = frozenset({"logs", "benchmarks", "store"})
VOLATILE_SUFFIXES = (".log", ".html", ".zip")


def is_volatile(relative: Path) -> bool:
    """Whether a result file may differ between identical runs (logs, benchmarks, timings)."""
    return (
        bool(VOLATILE_DIRS.intersection(relative.parts[:-1]))
        or relative.name.endswith(VOLATILE_SUFFIXES)
        or "timing" in relative.name
        or "benchmark" in relative.name
    )


def result_files(results: Path) -> set[Path]:
    """Relative paths of the comparable files under ``results`` (symlinks followed)."""
    return {
        path.relative_to(results)
        for path in results.rglob("*")
        if path.is_file() and not is_volatile(path.relative_to(results))
    }


def file_digest(path: Path) -> str:
    """The SHA-256 hex digest of one file."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def result_digests(results: Path) -> dict[str, str]:
    """``relative path -> sha256`` for every comparable file under ``results``, sorted by path."""
    return {path.as_posix(): file_digest(results / path) for path in sorted(result_files(results))}


def manifest_text(digests: dict[str, str]) -> str:
    """The digests in ``sha256sum`` format: one ``<digest>  <path>`` line per file."""
    return "".join(f"{digest}  {path}\n" for path, digest in digests.items())


def read_manifest(path: Path) -> dict[str, str]:
    """A manifest written by :func:`manifest_text`, as ``relative path -> sha256``."""
    digests = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        digest, separator, name = line.partition("  ")
        if not separator or len(digest) != 64:
            raise ValueError(f"{path}:{number}: not a '<sha256>  <path>' line: {line!r}")
        digests[name] = digest
    return digests


def digest_differences(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    """Every file missing from ``actual``, unexpected in it, or with another digest."""
    differences = [f"missing: {path}" for path in sorted(expected.keys() - actual.keys())]
    differences += [f"unexpected: {path}" for path in sorted(actual.keys() - expected.keys())]
    differences += [
        f"differs: {path}"
        for path in sorted(expected.keys() & actual.keys())
        if expected[path] != actual[path]
    ]
    return differences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a run's result folder, e.g. results/demo")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", type=Path, metavar="MANIFEST", help="compare with MANIFEST")
    action.add_argument("--write", type=Path, metavar="MANIFEST", help="(re)write MANIFEST")
    arguments = parser.parse_args(argv)
    digests = result_digests(arguments.results)
    if not digests:
        parser.error(f"{arguments.results} holds no result files")
    if arguments.write:
        write_text(arguments.write, manifest_text(digests))
        print(f"{len(digests)} result files written to {arguments.write}")
        return 0
    differences = digest_differences(read_manifest(arguments.check), digests)
    for line in differences:
        print(line)
    print(f"{len(digests)} result files, {len(differences)} differences from {arguments.check}")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
