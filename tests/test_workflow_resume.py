"""SIGKILL the demo workflow in the middle of a model rule, rerun it, and get the complete result.

The kill takes down snakemake and every job process at once, as a power cut or an OOM killer
would. After ``snakemake --unlock`` (the kill leaves the directory lock behind), the rerun (with
``rerun-incomplete`` from ``profiles/default``) must redo the interrupted jobs and end with
results byte-equal to an uninterrupted run: no partial file is taken for complete.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    DEMO_CONFIG,
    WorkflowCopy,
    clean_environment,
    copy_workflow,
    job_blocks,
    result_differences,
    run_demo,
    snakemake_command,
)

pytestmark = pytest.mark.slow

START_TIMEOUT_SECONDS = 900
KILLED_WRITE = re.compile(r"^unexpected: (?:.*/)?\.[^/]+\.part$")


class JobWatcher:
    """Reads a running snakemake's output; records each started model job's rule and logs.

    A model job is one whose ``resources:`` line names ``gpu`` (model rules declare it, the
    demo config sets it to 0).
    """

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self.model_jobs: list[tuple[str, list[str]]] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for rule, fields in job_blocks(self._recorded(stream)):
            if re.search(r"\bgpu=", fields.get("resources", "")) and "log" in fields:
                logs = [log.strip() for log in fields["log"].split(",")]
                self.model_jobs.append((rule, logs))

    def _recorded(self, stream) -> Iterator[str]:
        for line in stream:
            self.lines.append(line)
            yield line

    def output(self) -> str:
        return "".join(self.lines)


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        tree.append(pid)
        frontier.extend(children.get(pid, []))
    return tree


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL snakemake, its process group and every descendant (jobs may start sessions)."""
    pids = process_tree(process.pid)
    os.killpg(process.pid, signal.SIGKILL)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=60)


def kill_during_model_rule(workflow: WorkflowCopy) -> str:
    """Start the demo, SIGKILL everything once a model job's script is running; its rule."""
    process = subprocess.Popen(
        snakemake_command("--cores", "2", "--configfile", DEMO_CONFIG),
        cwd=workflow.root,
        env=clean_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    watcher = JobWatcher(process.stdout)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    try:
        while time.monotonic() < deadline and process.poll() is None:
            for rule, logs in watcher.model_jobs:
                # A model job's log appears when its script starts (anchorflow.workflow.log_to).
                if any((workflow.root / log).exists() for log in logs):
                    kill_tree(process)
                    return rule
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            kill_tree(process)
    pytest.fail(f"no model job started; output:\n{watcher.output()[-5000:]}")


def test_sigkill_during_model_rule_then_rerun_gives_complete_results(
    demo_baseline: WorkflowCopy, tmp_path: Path
) -> None:
    workflow = copy_workflow(tmp_path / "killed")
    rule = kill_during_model_rule(workflow)
    incomplete = list((workflow.root / ".snakemake" / "incomplete").rglob("*"))
    assert incomplete, f"the kill during {rule} left no job marked incomplete"

    # A killed snakemake leaves its directory lock behind; --unlock is the documented recovery.
    run_demo(workflow, "--unlock")
    run_demo(workflow)
    differences = result_differences(demo_baseline.results, workflow.results)
    # A write killed half-way leaves its hidden temporary sibling (anchorflow.io.atomic_path),
    # which no rule reads; anything else that differs is a partial output taken for complete.
    assert [d for d in differences if not KILLED_WRITE.match(d)] == []
