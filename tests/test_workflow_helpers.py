"""Helpers between the rules and the package: rule logs and the jobs' PYTHONPATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from anchorflow.workflow import export_package_path

FAILING_ATTEMPT = (
    "import sys\n"
    "from anchorflow.workflow import log_to\n"
    "log = log_to(sys.argv[1])\n"
    "log.info('attempt starts')\n"
    "raise RuntimeError(f'failure number {sys.argv[2]}')\n"
)


def test_a_retried_job_keeps_the_traceback_of_every_attempt(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "rule.log"
    for attempt in (1, 2, 3):
        completed = subprocess.run(
            [sys.executable, "-c", FAILING_ATTEMPT, str(log), str(attempt)],
            capture_output=True,
            text=True,
        )
        assert completed.returncode != 0
    text = log.read_text()
    for attempt in (1, 2, 3):
        assert f"==== attempt {attempt} ====" in text
        assert f"RuntimeError: failure number {attempt}" in text
    assert text.index("failure number 1") < text.index("==== attempt 2 ====")


def test_export_package_path_puts_the_source_folder_first_once(tmp_path: Path) -> None:
    environment = {"PYTHONPATH": os.pathsep.join(["/elsewhere", str(tmp_path)])}
    value = export_package_path(tmp_path, environment)
    assert value.split(os.pathsep) == [str(tmp_path.resolve()), "/elsewhere"]
    assert export_package_path(tmp_path, environment) == value
    assert export_package_path(tmp_path, {}) == str(tmp_path.resolve())
