"""Rerun scope: a changed parameter reruns exactly its dependents (checked on the dry-run job
list), and a second checkout takes the dataset acquisition from the shared output cache.

On the completed baseline demo run, the config is changed in one key. The dry run must list every
job of the rule that reads the key (reason: changed params), jobs of the rules downstream of it in
the rule graph, and nothing else, except ``write_config``, whose output is the whole config.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml
from conftest import (
    DEMO_CONFIG,
    WorkflowCopy,
    clean_environment,
    copy_workflow,
    job_blocks,
    run_snakemake,
)

pytestmark = pytest.mark.slow

# Rules that rerun on any config change by design.
WHOLE_CONFIG_RULES = {"write_config"}

DOT_NODE = re.compile(r'^\s*(\d+)\[label = "([^"\\]*)')
DOT_EDGE = re.compile(r"^\s*(\d+) -> (\d+)")


def parse_dry_run(text: str) -> dict[str, tuple[str, str]]:
    """The jobs of a dry-run listing: job id -> (rule, reason)."""
    return {
        fields["jobid"]: (rule, fields.get("reason", ""))
        for rule, fields in job_blocks(text.splitlines())
    }


def parse_dot(text: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Nodes (id -> rule) and edges (producer, consumer) of ``--dag`` or ``--rulegraph`` output."""
    lines = text.splitlines()
    nodes = dict(match.groups() for match in map(DOT_NODE.match, lines) if match)
    edges = [match.groups() for match in map(DOT_EDGE.match, lines) if match]
    return nodes, edges


def downstream(start: Iterable[str], edges: list[tuple[str, str]]) -> set[str]:
    """Every node reachable from ``start`` in a graph, ``start`` included."""
    consumers: dict[str, set[str]] = {}
    for producer, consumer in edges:
        consumers.setdefault(producer, set()).add(consumer)
    reached = set(start)
    frontier = list(reached)
    while frontier:
        for consumer in consumers.get(frontier.pop(), ()):
            if consumer not in reached:
                reached.add(consumer)
                frontier.append(consumer)
    return reached


def changed_config(workflow: WorkflowCopy, key: str, value: object, path: Path) -> Path:
    """The demo config with ``key`` (dotted) set to ``value``, written to ``path``."""
    config = yaml.safe_load((workflow.root / DEMO_CONFIG).read_text(encoding="utf-8"))
    *parents, leaf = key.split(".")
    section = config
    for parent in parents:
        section = section.setdefault(parent, {})
    assert section.get(leaf) != value, f"{key} is already {value!r} in the demo config"
    section[leaf] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def dry_run_jobs(workflow: WorkflowCopy, configfile: Path) -> dict[str, tuple[str, str]]:
    listing = run_snakemake(workflow, "--dry-run", "--cores", "2", "--configfile", str(configfile))
    return parse_dry_run(listing.stdout + listing.stderr)


def test_unchanged_config_reruns_nothing(demo_baseline: WorkflowCopy) -> None:
    jobs = dry_run_jobs(demo_baseline, demo_baseline.root / DEMO_CONFIG)
    assert set(jobs) == set(), f"a complete run would rerun: {sorted(jobs)}"


@pytest.mark.parametrize(
    ("key", "value", "reading_rule"),
    [("sentences.token_rule", "prefix", "token_spans")],
)
def test_changed_parameter_reruns_exactly_its_dependents(
    demo_baseline: WorkflowCopy, tmp_path: Path, key: str, value: object, reading_rule: str
) -> None:
    configfile = changed_config(demo_baseline, key, value, tmp_path / "config.yaml")
    jobs = dry_run_jobs(demo_baseline, configfile)
    arguments = ("--cores", "2", "--configfile", str(configfile))
    # Job ids are not stable between invocations, and --dag labels carry only some wildcards, so
    # the DAG is compared per rule: its rule graph, and its number of jobs per rule.
    rule_nodes, rule_edges = parse_dot(
        run_snakemake(demo_baseline, "--rulegraph", *arguments).stdout
    )
    dag_nodes, _ = parse_dot(run_snakemake(demo_baseline, "--dag", *arguments).stdout)
    jobs_per_rule = Counter(dag_nodes.values())
    rerun_per_rule = Counter(rule for rule, _ in jobs.values())

    params_changed = Counter(rule for rule, reason in jobs.values() if "params" in reason.lower())
    assert set(params_changed) == {reading_rule} | WHOLE_CONFIG_RULES
    assert params_changed[reading_rule] == jobs_per_rule[reading_rule], "not every job reruns"

    reading_nodes = {node for node, rule in rule_nodes.items() if rule == reading_rule}
    dependents = {rule_nodes[node] for node in downstream(reading_nodes, rule_edges)}
    assert set(rerun_per_rule) == dependents | WHOLE_CONFIG_RULES
    assert all(rerun_per_rule[rule] <= jobs_per_rule[rule] for rule in rerun_per_rule)


def test_second_checkout_takes_the_acquisition_from_the_output_cache(tmp_path: Path) -> None:
    """``cache: "omit-software"`` on acquire_rollouts: one download serves every checkout."""
    environment = clean_environment()
    environment["SNAKEMAKE_OUTPUT_CACHE"] = str(tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    arguments = ("--cache", "--cores", "1", "--configfile", DEMO_CONFIG)
    arguments += ("--until", "acquire_rollouts")
    first, second = (copy_workflow(tmp_path / name) for name in ("first", "second"))
    stored = run_snakemake(first, *arguments, environment=environment)
    reused = run_snakemake(second, *arguments, environment=environment)

    assert "to cache" in stored.stdout + stored.stderr
    assert "to cache" not in reused.stdout + reused.stderr
    for name in ("records.jsonl", "manifest.tsv", "excluded.tsv"):
        path = second.results / "rollouts" / name
        assert path.is_symlink() and path.resolve().parent == tmp_path / "cache"
        assert path.read_bytes() == (first.results / "rollouts" / name).read_bytes()
    assert (second.results / "logs" / "acquire_rollouts.log").stat().st_size == 0
