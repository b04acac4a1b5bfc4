"""Shared fixtures for the end-to-end workflow tests (marker ``slow``).

The workflow tests never touch the checkout's own ``results/``: each run happens in a fresh copy
of the repository's workflow files under a pytest temp dir. One completed demo run
(``demo_baseline``) is shared by every test of the session that needs one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from labels_support import fake_api, real_records

from anchorflow.digest import digest_differences, result_digests

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = "demo/config.yaml"
DEMO_RUN = "demo"
RUN_TIMEOUT_SECONDS = 1800

# Not part of the workflow: development state, caches, earlier results, other sessions' tests.
COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".snakemake",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    ".cache",
    "__pycache__",
    "*.egg-info",
    "results",
    "tests",
    "bench",
)

FIGURE_SUFFIXES = (".png", ".pdf")


@dataclass(frozen=True)
class WorkflowCopy:
    """A copy of the workflow in ``root``; its demo results go to ``root/results/demo``."""

    root: Path

    @property
    def results(self) -> Path:
        return self.root / "results" / DEMO_RUN


def snakemake_command(*args: str) -> list[str]:
    """The command line of the snakemake installed beside this Python."""
    return [sys.executable, "-m", "snakemake", *args]


def clean_environment() -> dict[str, str]:
    """This process's environment without settings that would change how snakemake runs."""
    environment = dict(os.environ)
    for name in ("SNAKEMAKE_PROFILE", "SNAKEMAKE_OUTPUT_CACHE"):
        environment.pop(name, None)
    return environment


def copy_workflow(destination: Path) -> WorkflowCopy:
    """Copy the repository's workflow files (no results, caches or tests) to ``destination``."""
    shutil.copytree(REPO_ROOT, destination, ignore=COPY_IGNORE, dirs_exist_ok=True)
    return WorkflowCopy(destination)


def run_snakemake(
    workflow: WorkflowCopy,
    *args: str,
    environment: dict[str, str] | None = None,
    timeout: float = RUN_TIMEOUT_SECONDS,
) -> subprocess.CompletedProcess[str]:
    """Run snakemake in ``workflow.root``; fail the test with its output if it fails."""
    completed = subprocess.run(
        snakemake_command(*args),
        cwd=workflow.root,
        env=environment or clean_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        pytest.fail(
            f"snakemake {' '.join(args)} failed with exit code {completed.returncode}\n"
            f"--- stdout\n{completed.stdout[-5000:]}\n--- stderr\n{completed.stderr[-10000:]}"
        )
    return completed


JOB_HEADER = re.compile(r"^(?:local)?(?:rule|checkpoint) (\S+):$")


def job_blocks(lines: Iterable[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """The jobs of snakemake's printed job blocks, as they end: ``(rule, {field: value})``."""
    rule, fields = None, {}
    for line in lines:
        header = JOB_HEADER.match(line.strip())
        if rule and line.startswith("    ") and ": " in line:
            key, value = line.strip().split(": ", 1)
            fields[key] = value
            continue
        if rule:
            yield rule, fields
        rule, fields = (header.group(1), {}) if header else (None, {})
    if rule:
        yield rule, fields


def run_demo(workflow: WorkflowCopy, *args: str) -> subprocess.CompletedProcess[str]:
    """The demo DAG as documented (``--cores 2 --configfile demo/config.yaml``), plus ``args``."""
    return run_snakemake(workflow, "--cores", "2", "--configfile", DEMO_CONFIG, *args)


def figure_data_file(figure: Path) -> Path:
    """The tidy data file written beside a figure: ``name.png`` -> ``name_data.csv``."""
    return figure.with_name(f"{figure.stem}_data.csv")


def result_differences(expected: Path, actual: Path) -> list[str]:
    """Every way the result tree ``actual`` differs from ``expected``
    (:func:`anchorflow.digest.digest_differences`), and every figure without its data file.

    Every file must be byte-equal, figures included: the figures (PNG, PDF) are written without
    dates, so they are deterministic too, and each must have its ``_data.csv`` beside it.
    Logs, benchmarks and timing files are not compared.
    """
    expected_digests = result_digests(expected)
    differences = digest_differences(expected_digests, result_digests(actual))
    return differences + [
        f"figure without its _data.csv: {path}"
        for path in expected_digests
        if Path(path).suffix in FIGURE_SUFFIXES
        and figure_data_file(Path(path)).as_posix() not in expected_digests
    ]


@pytest.fixture(scope="session")
def demo_baseline(tmp_path_factory: pytest.TempPathFactory) -> WorkflowCopy:
    """One completed demo run in a fresh copy of the workflow, shared by the session's tests.

    Tests must not change it; a test that needs to modify a run makes its own copy.
    """
    workflow = copy_workflow(tmp_path_factory.mktemp("demo-baseline"))
    run_demo(workflow)
    return workflow


@pytest.fixture(scope="session")
def records() -> list[dict]:
    """The 20 real-sample records, built by the acquisition code (the labelling tests)."""
    return real_records()


@pytest.fixture
def server(records, monkeypatch):
    """The fake Anthropic API on 127.0.0.1 answering with ``records``' labels."""
    with fake_api(records, monkeypatch) as fake:
        yield fake
