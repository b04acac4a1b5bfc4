"""Sharded model stages end to end: the same result files as the shard defaults, and a changed
trace reruns only its own shard."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import (
    DEMO_CONFIG,
    WorkflowCopy,
    copy_workflow,
    job_blocks,
    result_differences,
    run_snakemake,
)

from anchorflow.shards import shard_of

pytestmark = pytest.mark.slow
SHARDED = {
    "attention": {"shards": 3},
    "suppression": {"shards": 2},
    "interventions": {"conditions_per_job": 9},
}
# Where sharded and unsharded runs legitimately differ: the shard folders and the result store,
# the generation files (grouped by job), and the config record itself.
LAYOUT = ("shards", "store", "generations")


def comparable(differences: list[str]) -> list[str]:
    """The differences outside the shard layout (lines ``"<kind>: <relative path>"``)."""
    kept = []
    for line in differences:
        path = Path(line.split(": ", 1)[1])
        if not set(LAYOUT) & set(path.parts) and path != Path("report/config.yaml"):
            kept.append(line)
    return kept


def test_sharded_run_equals_the_default_and_a_changed_trace_reruns_its_shard(
    demo_baseline: WorkflowCopy, tmp_path: Path
) -> None:
    workflow = copy_workflow(tmp_path / "sharded")
    overlay = workflow.root / "sharded.yaml"
    overlay.write_text(yaml.safe_dump(SHARDED))
    arguments = ("--cores", "2", "--configfile", DEMO_CONFIG, str(overlay))
    run_snakemake(workflow, *arguments)
    assert comparable(result_differences(demo_baseline.results, workflow.results)) == []
    shards = sorted(
        p.name for p in (workflow.results / "attention" / "demo-qwen2" / "shards").iterdir()
    )
    assert len(shards) > 1

    trace = "101_correct"
    tokens = workflow.results / "tokens" / "demo-qwen2" / f"{trace}.json"
    tokens.write_text(tokens.read_text() + "\n")  # new content (a touch alone is checksummed away)
    listing = run_snakemake(workflow, "--dry-run", *arguments).stdout
    model_jobs = [
        (rule, fields.get("wildcards", ""))
        for rule, fields in job_blocks(listing.splitlines())
        if rule in ("sentence_attention", "suppression_matrix")
    ]
    assert sorted(model_jobs) == [
        ("sentence_attention", f"model=demo-qwen2, shard={shard_of(trace, 3)}"),
        ("suppression_matrix", f"model=demo-qwen2, shard={shard_of(trace, 2)}"),
    ]
