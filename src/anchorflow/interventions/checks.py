"""Completeness checks of an intervention run's tables (what CI asserts after the real tier).

``python -m anchorflow.interventions.checks CONFIG [CONFIG ...]`` merges the config files as
Snakemake does (``config.yaml`` first), fills the schema's defaults and checks the tables of the
configured intervention model: every condition present, each with the configured number of
samples, at least ``n_random_draws`` random draws per receiver condition, the problem selection
inside its accuracy band. Exit status 1 and one line per failure when something is missing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from anchorflow.config import validate_config
from anchorflow.data.rollouts import read_records
from anchorflow.interventions.attention_conditions import SENTENCE_EXPERIMENTS
from anchorflow.interventions.counterfactual import analysed_sentences
from anchorflow.interventions.experiments import patching_problems, samples_per_problem
from anchorflow.io import read_json, read_tsv

SCHEMA = Path("schemas/config.schema.yaml")


def merged_config(paths: Sequence[str | Path], root: Path = Path(".")) -> dict[str, Any]:
    """``config.yaml`` then each file, merged key by key (as ``--configfile``), defaults filled."""
    from snakemake.utils import update_config

    config: dict[str, Any] = {}
    for path in [root / "config.yaml", *(root / p for p in paths)]:
        update_config(config, yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})
    validate_config(config, root / SCHEMA)
    return config


def check_selection(folder: Path, problems: Mapping[str, Any]) -> list[str]:
    """The selection table: the configured number kept, kept accuracies inside the band."""
    table = read_tsv(folder / "problems" / "selection.tsv")
    kept = table[table["kept"]]
    failures = []
    if problems["n_problems"] is not None and len(kept) != problems["n_problems"]:
        failures.append(f"selection: {len(kept)} problems kept, {problems['n_problems']} asked")
    if problems["selection_samples"]:
        if (table["n_samples"] != problems["selection_samples"]).any():
            failures.append("selection: a candidate lacks its selection samples")
        outside = ~kept["accuracy"].between(problems["accuracy_min"], problems["accuracy_max"])
        if outside.any():
            failures.append(
                f"selection: kept problems {kept['problem'][outside].tolist()} outside the band"
            )
    return failures


def check_accuracy_experiment(
    folder: Path,
    experiment: str,
    section: Mapping[str, Any],
    conditions: Mapping[str, Any],
    n_problems: int,
) -> list[str]:
    """Every condition scored with its samples; receiver rows with their random draws."""
    failures = []
    accuracy = read_tsv(folder / experiment / "accuracy.tsv").set_index("condition")
    total = 0
    for name, spec in conditions.items():
        want = samples_per_problem(section, spec) * n_problems
        total += want
        if name not in accuracy.index:
            failures.append(f"{experiment}: condition {name} has no accuracy row")
        elif int(accuracy.loc[name, "n"]) < want:
            failures.append(f"{experiment}: {name} has n = {accuracy.loc[name, 'n']} < {want}")
    modes = read_tsv(folder / experiment / "failure_modes.tsv")
    if int(modes["n"].sum()) < total or (modes["n"] == 0).any():
        failures.append(
            f"{experiment}: failure modes cover {modes['n'].sum()} of {total} generations"
        )
    table_name = f"{experiment}.tsv"
    table = read_tsv(folder / experiment / table_name)
    targeted = table[table["condition"] != "baseline"]
    if targeted.empty:
        failures.append(f"{experiment}: {table_name} has no intervention row")
    short = targeted[targeted["n_draws"] < section["n_random_draws"]]
    if not short.empty:
        failures.append(
            f"{experiment}: {short['condition'].tolist()} have fewer than "
            f"{section['n_random_draws']} random draws"
        )
    return failures


def check_counterfactual(
    folder: Path,
    section: Mapping[str, Any],
    conditions: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
) -> list[str]:
    """A row per (condition, trace, analysed sentence), every prefix resampled in full."""
    importance = read_tsv(folder / "counterfactual" / "importance.tsv")
    chunks = {record["trace"]: len(record["chunks"]) for record in records}
    failures = []
    for trace in section["traces"]:
        n_sentences = analysed_sentences(chunks[trace], section["max_sentences"])
        for name in conditions:
            rows = importance[(importance["condition"] == name) & (importance["trace"] == trace)]
            if len(rows) != n_sentences:
                failures.append(f"counterfactual: {name}/{trace} has {len(rows)} sentence rows")
            elif (rows["n_resamples"] < section["n_resamples"]).any():
                failures.append(f"counterfactual: {name}/{trace} lacks resamples")
    controls = read_tsv(folder / "counterfactual" / "controls.tsv").set_index("kind")
    if int(controls.loc["random", "n_conditions"]) < section["n_random_draws"]:
        failures.append("counterfactual: fewer random draws than configured")
    return failures


def check_run(config: Mapping[str, Any], root: Path = Path(".")) -> list[str]:
    """Every failure of the configured intervention model's tables (empty = complete);
    ``root``: the workflow folder holding ``results/``."""
    section = config["interventions"]
    model = section["model"] or config["models"][0]["name"]
    run = root / "results" / config["run"]
    folder = run / "interventions" / model
    resolved = read_json(folder / "conditions.json")["conditions"]
    failures = []
    problem_experiments = ("amplification", "ablation", "dynamic_amplification")
    accuracy_experiments = [e for e in problem_experiments if section[e]["enabled"]]
    n_problems = 0
    if accuracy_experiments:
        failures += check_selection(folder, section["problems"])
        n_problems = len(read_json(folder / "problems" / "problems.json")["problems"])
    for experiment in accuracy_experiments:
        failures += check_accuracy_experiment(
            folder, experiment, section[experiment], resolved[experiment], n_problems
        )
    records = read_records(run / "rollouts" / "records.jsonl")
    for experiment in ("patching", *SENTENCE_EXPERIMENTS):
        if section[experiment]["enabled"]:
            n_traces = len(patching_problems(records, section[experiment]["traces"]))
            failures += check_accuracy_experiment(
                folder, experiment, section[experiment], resolved[experiment], n_traces
            )
    if section["counterfactual"]["enabled"]:
        failures += check_counterfactual(
            folder, section["counterfactual"], resolved["counterfactual"], records
        )
    return failures


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", help="config files after config.yaml, in order")
    arguments = parser.parse_args(argv)
    try:
        failures = check_run(merged_config(arguments.configs))
    except FileNotFoundError as error:
        failures = [f"missing: {error.filename}"]
    for failure in failures:
        print(failure, file=sys.stderr)
    if failures:
        raise SystemExit(1)
    print("intervention tables complete")


if __name__ == "__main__":
    main()
