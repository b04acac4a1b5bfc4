"""Two independent demo runs produce identical result files (logs and timings aside), and the
run's report holds every figure and the run's config."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from conftest import (
    DEMO_CONFIG,
    REPO_ROOT,
    WorkflowCopy,
    copy_workflow,
    result_differences,
    run_demo,
    run_snakemake,
)

from anchorflow.digest import digest_differences, read_manifest, result_digests, result_files

pytestmark = pytest.mark.slow

# The demo's result digests: `python -m anchorflow.digest results/demo --check demo/results.sha256`
# after `make demo`. A change meant to alter results rewrites it (`--write`) and says why.
DEMO_MANIFEST = REPO_ROOT / "demo" / "results.sha256"


def test_two_demo_runs_give_identical_results(demo_baseline: WorkflowCopy, tmp_path: Path) -> None:
    second = copy_workflow(tmp_path / "second-run")
    run_demo(second)
    assert result_files(demo_baseline.results), "the baseline demo run produced no result files"
    assert result_differences(demo_baseline.results, second.results) == []


def test_report_holds_every_figure_and_the_config(
    demo_baseline: WorkflowCopy, tmp_path: Path
) -> None:
    report = tmp_path / "report.zip"
    run_snakemake(demo_baseline, "--configfile", DEMO_CONFIG, "--report", str(report))
    with zipfile.ZipFile(report) as archive:
        reported = {Path(name).name for name in archive.namelist()}
    figures = {path.name for path in demo_baseline.results.rglob("*.png")}
    assert figures, "the demo run made no figure"
    assert figures | {"config.yaml"} <= reported


def test_demo_results_match_the_committed_digests(demo_baseline: WorkflowCopy) -> None:
    """The refactoring guard: the demo DAG writes exactly the committed result bytes."""
    actual = result_digests(demo_baseline.results)
    assert digest_differences(read_manifest(DEMO_MANIFEST), actual) == []
