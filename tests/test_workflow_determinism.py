"""Two independent demo runs produce identical result files (logs and timings aside), and the
run's report holds every figure and the run's config."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from conftest import (
    DEMO_CONFIG,
    WorkflowCopy,
    copy_workflow,
    result_differences,
    result_files,
    run_demo,
    run_snakemake,
)

pytestmark = pytest.mark.slow


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
