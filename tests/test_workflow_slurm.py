"""The demo DAG on a real SLURM cluster gives the same results as the local run.

Runs when a SLURM cluster answers (``sinfo``), or when ``ANCHORFLOW_SLURM_TEST=1``: then a private
single-node cluster is started on this machine with ``.ci/slurm/start.sh`` (installs Debian's
slurm-wlm and munge if missing) and stopped again afterwards, also when the test fails.

The run uses ``profiles/slurm`` with its site settings replaced for the test cluster (partition:
the cluster's default; cores: its CPUs per node; no account; no GPU model, the demo requests no
GPU).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import (
    DEMO_CONFIG,
    REPO_ROOT,
    WorkflowCopy,
    clean_environment,
    copy_workflow,
    result_differences,
    run_snakemake,
)

pytestmark = pytest.mark.slow

CLUSTER_SCRIPTS = REPO_ROOT / ".ci" / "slurm"
SLURM_PROFILE = REPO_ROOT / "profiles" / "slurm" / "config.yaml"
START_TIMEOUT_SECONDS = 900
USABLE_NODE_STATES = ("idle", "mix", "alloc", "comp")


def default_partition(environment: dict[str, str]) -> tuple[str, int] | None:
    """The cluster's default partition and its CPUs per node, or None when no cluster answers."""
    if shutil.which("sinfo") is None:
        return None
    try:
        listing = subprocess.run(
            ["sinfo", "--noheader", "--format=%P %t %c"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    for line in listing.stdout.splitlines() if listing.returncode == 0 else []:
        partition, state, cpus = line.split()
        if partition.endswith("*") and state.startswith(USABLE_NODE_STATES):
            return partition.rstrip("*"), int(cpus.rstrip("+"))
    return None


@pytest.fixture(scope="session")
def slurm_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An environment whose ``sbatch``/``squeue`` reach a running cluster."""
    environment = clean_environment()
    if default_partition(environment) is not None:
        yield environment
        return
    if os.environ.get("ANCHORFLOW_SLURM_TEST") != "1":
        pytest.skip(
            "no SLURM cluster answers sinfo; set ANCHORFLOW_SLURM_TEST=1 to start a private "
            "single-node cluster with .ci/slurm/start.sh (root, Debian)"
        )
    state = tmp_path_factory.mktemp("slurm-cluster")
    try:
        started = subprocess.run(
            [str(CLUSTER_SCRIPTS / "start.sh"), str(state)],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_SECONDS,
            check=False,
        )
        if started.returncode != 0:
            pytest.fail(f"could not start the SLURM test cluster:\n{started.stderr[-5000:]}")
        environment["SLURM_CONF"] = str(state / "slurm.conf")
        yield environment
    finally:
        subprocess.run([str(CLUSTER_SCRIPTS / "stop.sh"), str(state)], timeout=120, check=False)


def cluster_profile(partition: str, cpus: int, destination: Path) -> Path:
    """``profiles/slurm`` with its site settings replaced for the test cluster."""
    profile = yaml.safe_load(SLURM_PROFILE.read_text(encoding="utf-8"))
    profile["cores"] = cpus
    defaults = profile["default-resources"]
    defaults.pop("slurm_account", None)
    defaults["slurm_partition"] = partition
    for resources in profile.get("set-resources", {}).values():
        resources.pop("gpu_model", None)
        resources["slurm_partition"] = partition
    destination.mkdir(parents=True)
    (destination / "config.yaml").write_text(yaml.safe_dump(profile), encoding="utf-8")
    return destination


def test_demo_on_slurm_equals_local_run(
    slurm_environment: dict[str, str], demo_baseline: WorkflowCopy, tmp_path: Path
) -> None:
    # slurm_environment comes first: without a cluster, the test skips before the baseline run.
    cluster = default_partition(slurm_environment)
    assert cluster is not None, "the SLURM cluster stopped answering"
    profile = cluster_profile(*cluster, tmp_path / "profile")
    workflow = copy_workflow(tmp_path / "slurm-run")
    completed = run_snakemake(
        workflow,
        "--workflow-profile",
        str(profile),
        "--configfile",
        DEMO_CONFIG,
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--slurm-no-account",
        environment=slurm_environment,
    )
    output = completed.stdout + completed.stderr
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", output)
    assert submitted, f"no job went through SLURM:\n{output[-5000:]}"
    assert "Falling back to 'sacct'" not in output
    assert result_differences(demo_baseline.results, workflow.results) == []
