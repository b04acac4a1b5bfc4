"""The demo DAG with one trace (and one condition) per model job against the shard defaults.

Both runs start from a fresh copy of the workflow, in one invocation on this machine: wall time
of the whole DAG, CPU time of snakemake and every job, the summed wall and CPU time of the model
jobs (from their benchmark files), the number of model loads (transformers' "Loading weights"
progress lines in the model jobs' logs) and whether the two runs' result files are identical
(the shard folders, the result store, the grouped generation files and the config record
excepted). Prints a Markdown table and the ratios.

    python bench/bench_dag.py [--cores 2]
"""

from __future__ import annotations

import argparse
import filecmp
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from anchorflow.shards import shard_of

REPO = Path(__file__).resolve().parents[1]
MODEL_RULES = (
    "sentence_attention",
    "suppression_matrix",
    "suppression_receiver_heads",
    "intervention_generate",
    "intervention_head_means",
)
IGNORED = shutil.ignore_patterns(
    ".git", ".venv", ".snakemake", "results", "tests", "bench", "__pycache__", "*.egg-info"
)
LAYOUT = {"shards", "store", "generations", "logs", "benchmarks"}


def per_job_overlay(traces: list[str]) -> dict:
    """Shard counts that give every demo trace its own shard, and one condition per job."""
    count = len(traces)
    while len({shard_of(trace, count) for trace in traces}) < len(traces):
        count += 1
    return {
        "attention": {"shards": count},
        "suppression": {"shards": count},
        "interventions": {"conditions_per_job": 1},
    }


def run(copy: Path, overlay: dict | None, cores: int) -> dict:
    shutil.copytree(REPO, copy, ignore=IGNORED)
    command = [sys.executable, "-m", "snakemake", "--cores", str(cores)]
    command += ["--configfile", "demo/config.yaml"]
    if overlay:
        (copy / "overlay.yaml").write_text(yaml.safe_dump(overlay))
        command.append("overlay.yaml")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=copy, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    results = copy / "results" / "demo"
    jobs = []
    for rule in MODEL_RULES:
        for path in (results / "benchmarks" / rule).rglob("*.tsv"):
            jobs.append({**pd.read_csv(path, sep="\t").iloc[-1].to_dict(), "rule": rule})
    frame = pd.DataFrame(jobs)
    # One load prints one progress line (its 0 % and 100 % states joined by carriage returns).
    loads = sum(
        sum("Loading weights" in line for line in path.read_text(errors="replace").splitlines())
        for rule in MODEL_RULES
        for path in (results / "logs" / rule).rglob("*.log")
    )
    return {
        "dag_wall_s": wall,
        "dag_cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "model_jobs": len(frame),
        "model_job_wall_s": float(frame["s"].sum()),
        "model_job_cpu_s": float(frame["cpu_time"].sum()),
        "model_loads": loads,
        "results": results,
    }


def differing_files(first: Path, second: Path) -> list[str]:
    def files(root: Path) -> set[Path]:
        return {
            p.relative_to(root)
            for p in root.rglob("*")
            if p.is_file() and not LAYOUT & set(p.relative_to(root).parts)
        }

    names = files(first) ^ files(second)
    common = files(first) & files(second)
    names |= {p for p in common if not filecmp.cmp(first / p, second / p, shallow=False)}
    return sorted(str(p) for p in names if str(p) != "report/config.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2)
    arguments = parser.parse_args()
    traces = [f"{p}_{c}" for p in range(101, 106) for c in ("correct", "incorrect")]
    with tempfile.TemporaryDirectory() as folder:
        per_job = run(Path(folder) / "per-job", per_job_overlay(traces), arguments.cores)
        sharded = run(Path(folder) / "sharded", None, arguments.cores)
        differences = differing_files(per_job["results"], sharded["results"])
    rows = []
    for key in (
        "dag_wall_s",
        "dag_cpu_s",
        "model_jobs",
        "model_job_wall_s",
        "model_job_cpu_s",
        "model_loads",
    ):
        ratio = per_job[key] / sharded[key] if sharded[key] else float("nan")
        rows.append(f"| {key} | {per_job[key]:.1f} | {sharded[key]:.1f} | {ratio:.2f}x |")
    print("| measure | one trace / condition per job | shard defaults | ratio |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nresult files that differ: {len(differences)} {differences[:10]}")


if __name__ == "__main__":
    main()
