"""Tables of the accuracy experiments: receiver against random conditions, failure modes and
difficulty strata (method reference §9.8, §10; docs/METHODS.md "Intervention tables").

A scored row is one generation: ``condition``, ``problem``, ``item_id``, ``correct``,
``finished``, ``stopped``, ``answer``, ``n_tokens``, ``level`` and ``repetition_loop``. A row is
accurate when it is correct and finished (the strict accuracy of :func:`scoring.summarise`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from anchorflow.interventions.scoring import wilson_interval

FAMILY_KEYS = ("kind", "op", "k", "scale")


def _accurate(frame: pd.DataFrame) -> pd.Series:
    return frame["correct"].astype(bool) & frame["finished"].astype(bool)


def condition_families(conditions: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per condition: ``condition, kind, op, k, scale, draw`` (``k = 0`` and scale 1
    for the baseline; ``op`` the attention experiments' op or pattern, else empty; ``draw`` -1
    for non-random conditions)."""
    return pd.DataFrame(
        [
            {
                "condition": name,
                "kind": spec["kind"],
                "op": str(spec.get("op", "")),
                "k": int(spec.get("k", 0)),
                "scale": float(spec.get("scale", 1.0)),
                "draw": int(spec.get("draw", -1)),
            }
            for name, spec in conditions.items()
        ]
    )


def _with_families(
    scored: pd.DataFrame, conditions: Mapping[str, Mapping[str, Any]]
) -> pd.DataFrame:
    families = condition_families(conditions)
    missing = set(families["condition"]) - set(scored["condition"])
    if missing:
        raise ValueError(f"conditions without any generation: {sorted(missing)}")
    frame = scored.merge(families, on="condition", how="inner", validate="many_to_one")
    frame["accurate"] = _accurate(frame)
    return frame


def failure_mode_table(
    scored: pd.DataFrame, conditions: Mapping[str, Mapping[str, Any]]
) -> pd.DataFrame:
    """Failure modes per condition family (random draws pooled): ``n_conditions``, ``n``,
    ``accuracy``, the rates of ``repetition_loop``, ``sentence_loop``, ``backtracking_loop``,
    ``unfinished`` and ``no_box``, ``mean_tokens``, and the arithmetic: statements per
    generation, the share of candidates that did not parse, the share of parsed statements
    that are wrong (pooled over the family) and the rate of generations with a wrong one."""
    frame = _with_families(scored, conditions)
    frame = frame.assign(
        arithmetic_parsed=frame["arithmetic_statements"] - frame["arithmetic_unparsed"],
        any_arithmetic_error=frame["arithmetic_wrong"] > 0,
    )
    table = (
        frame.groupby(list(FAMILY_KEYS), sort=True)
        .agg(
            n_conditions=("condition", "nunique"),
            n=("accurate", "size"),
            accuracy=("accurate", "mean"),
            repetition_loop_rate=("repetition_loop", "mean"),
            sentence_loop_rate=("sentence_loop", "mean"),
            backtracking_loop_rate=("backtracking_loop", "mean"),
            unfinished_rate=("unfinished", "mean"),
            no_box_rate=("no_box", "mean"),
            mean_tokens=("n_tokens", "mean"),
            arithmetic_per_generation=("arithmetic_statements", "mean"),
            statements=("arithmetic_statements", "sum"),
            unparsed=("arithmetic_unparsed", "sum"),
            parsed=("arithmetic_parsed", "sum"),
            wrong=("arithmetic_wrong", "sum"),
            arithmetic_error_generation_rate=("any_arithmetic_error", "mean"),
        )
        .reset_index()
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        table["arithmetic_unparsed_share"] = table["unparsed"] / table["statements"]
        table["arithmetic_error_share"] = table["wrong"] / table["parsed"]
    rates = [column for column in table if column.endswith(("_rate", "_share"))]
    return table.drop(columns=["statements", "unparsed", "parsed", "wrong"]).astype(
        dict.fromkeys(["accuracy", *rates], float)
    )


def problem_strata(scored: pd.DataFrame, tiers: int) -> tuple[dict[Any, str], str]:
    """Stratum per problem and the rule used: the MATH ``level`` when every problem has one,
    else ``tiers`` tiers of baseline accuracy (``tier 1`` = lowest; problems ranked by baseline
    accuracy, ties by id, then cut into equal-count groups)."""
    levels = scored.groupby("problem")["level"].first() if "level" in scored else pd.Series()
    problems = sorted(scored["problem"].unique())
    if len(levels) == len(problems) and all(str(value).strip() for value in levels):
        return {problem: str(levels[problem]) for problem in problems}, "level"
    baseline = scored[scored["condition"] == "baseline"]
    if baseline.empty:
        raise ValueError("no level and no baseline condition to derive accuracy tiers from")
    accuracy = _accurate(baseline).groupby(baseline["problem"]).mean()
    order = sorted(problems, key=lambda problem: (accuracy.get(problem, 0.0), problem))
    groups = np.array_split(np.arange(len(order)), min(tiers, len(order)))
    strata = {}
    for tier, members in enumerate(groups, start=1):
        for index in members:
            strata[order[index]] = f"tier {tier}"
    return strata, "baseline_accuracy_tiers"


def strata_table(
    scored: pd.DataFrame, conditions: Mapping[str, Mapping[str, Any]], tiers: int
) -> pd.DataFrame:
    """Accuracy per condition family and difficulty stratum (random draws pooled): ``stratum,
    stratum_rule, kind, k, scale, n_problems, n, accuracy, ci_low, ci_high``."""
    frame = _with_families(scored, conditions)
    strata, rule = problem_strata(frame, tiers)
    frame["stratum"] = frame["problem"].map(strata)
    rows = []
    for keys, group in frame.groupby(["stratum", *FAMILY_KEYS], sort=True):
        successes, n = int(group["accurate"].sum()), len(group)
        low, high = wilson_interval(successes, n)
        rows.append(
            {
                "stratum": keys[0],
                "stratum_rule": rule,
                **dict(zip(FAMILY_KEYS, keys[1:], strict=True)),
                "n_problems": group["problem"].nunique(),
                "n": n,
                "accuracy": successes / n,
                "ci_low": low,
                "ci_high": high,
            }
        )
    return pd.DataFrame(rows)


def paired_test(receiver: pd.Series, random_mean: pd.Series) -> dict[str, float]:
    """Wilcoxon signed-rank test (two-sided) of per-problem receiver accuracy against the
    per-problem mean over random draws; ``p = 1`` when every difference is 0."""
    joined = pd.concat([receiver.rename("r"), random_mean.rename("m")], axis=1, join="inner")
    differences = (joined["r"] - joined["m"]).to_numpy(dtype=float)
    result = {
        "n_problems": len(differences),
        "mean_difference": float(differences.mean()) if differences.size else math.nan,
    }
    if differences.size == 0:
        return {**result, "wilcoxon_statistic": math.nan, "p_value": math.nan}
    if np.allclose(differences, 0.0):
        return {**result, "wilcoxon_statistic": 0.0, "p_value": 1.0}
    test = stats.wilcoxon(differences, zero_method="wilcox", alternative="two-sided")
    return {**result, "wilcoxon_statistic": float(test.statistic), "p_value": float(test.pvalue)}


def receiver_vs_random(
    scored: pd.DataFrame,
    conditions: Mapping[str, Mapping[str, Any]],
    target_kind: str = "receivers",
    match_on: Sequence[str] = ("k", "scale"),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(summary, draws)``: per targeted condition (kind ``target_kind``), its accuracy with a
    95 % Wilson interval against the random conditions with the same ``match_on`` values:
    their mean accuracy, 2.5 and 97.5 % quantiles over draws, the number of draws and the
    paired test over problems. The baseline is the first row (``k = 0``). ``draws``: every
    random condition's accuracy."""
    frame = _with_families(scored, conditions)
    per_condition = frame.groupby("condition")["accurate"].agg(["sum", "size"])
    per_problem = frame.groupby(["condition", "problem"])["accurate"].mean()
    families = condition_families(conditions).set_index("condition")
    random_names = families.index[families["kind"] == "random"]
    draws = (
        families.loc[random_names]
        .assign(
            accuracy=lambda d: (
                per_condition.loc[d.index, "sum"] / per_condition.loc[d.index, "size"]
            ),
            n=lambda d: per_condition.loc[d.index, "size"],
            heads=[_heads_label(conditions[name].get("heads", [])) for name in random_names],
            draw_seed=[conditions[name].get("draw_seed", -1) for name in random_names],
        )
        .reset_index()
        .sort_values([*match_on, "draw"], kind="stable")
        .reset_index(drop=True)
    )
    baseline_successes, baseline_n = per_condition.loc["baseline"]
    baseline_accuracy = baseline_successes / baseline_n
    rows = [
        {
            "condition": "baseline",
            **{key: families.loc["baseline", key] for key in match_on},
            "heads": "",
            "receiver_accuracy": baseline_accuracy,
            "receiver_ci_low": wilson_interval(int(baseline_successes), int(baseline_n))[0],
            "receiver_ci_high": wilson_interval(int(baseline_successes), int(baseline_n))[1],
            "n": int(baseline_n),
            "random_mean": baseline_accuracy,
            "random_q025": math.nan,
            "random_q975": math.nan,
            "n_draws": 0,
            "n_problems": frame.loc[frame["condition"] == "baseline", "problem"].nunique(),
            "mean_difference": 0.0,
            "wilcoxon_statistic": math.nan,
            "p_value": math.nan,
        }
    ]
    targets = families[families["kind"] == target_kind].sort_values(list(match_on), kind="stable")
    for name, spec in targets.iterrows():
        same = (draws[list(match_on)] == spec[list(match_on)].to_numpy()).all(axis=1)
        matched = draws.loc[same]
        accuracies = matched["accuracy"].to_numpy(dtype=float)
        successes, n = per_condition.loc[name]
        low, high = wilson_interval(int(successes), int(n))
        random_by_problem = (
            per_problem.loc[list(matched["condition"])].groupby(level="problem").mean()
            if len(matched)
            else pd.Series(dtype=float)
        )
        rows.append(
            {
                "condition": name,
                **{key: spec[key] for key in match_on},
                "heads": _heads_label(conditions[name].get("heads", [])),
                "receiver_accuracy": successes / n,
                "receiver_ci_low": low,
                "receiver_ci_high": high,
                "n": int(n),
                "random_mean": float(accuracies.mean()) if accuracies.size else math.nan,
                "random_q025": float(np.quantile(accuracies, 0.025))
                if accuracies.size
                else math.nan,
                "random_q975": float(np.quantile(accuracies, 0.975))
                if accuracies.size
                else math.nan,
                "n_draws": len(accuracies),
                **paired_test(per_problem.loc[name], random_by_problem),
            }
        )
    return pd.DataFrame(rows), draws


def answer_change_rate(scored: pd.DataFrame, condition: str) -> float:
    """Share of a condition's generations whose answer differs from the baseline generation
    with the same item id (and, with paired seeds, the same random numbers)."""
    baseline = scored[scored["condition"] == "baseline"].set_index("item_id")["answer"]
    rows = scored[scored["condition"] == condition].set_index("item_id")["answer"]
    joined = pd.concat([rows.rename("a"), baseline.rename("b")], axis=1, join="inner")
    if joined.empty:
        return math.nan
    return float((joined["a"].fillna("") != joined["b"].fillna("")).mean())


def _heads_label(heads: Iterable[Sequence[int]]) -> str:
    return " ".join(f"L{layer}H{head}" for layer, head in heads)


def counterfactual_controls(
    per_sentence: pd.DataFrame, metric: str = "counterfactual_importance_kl"
) -> pd.DataFrame:
    """Counterfactual importance under the receiver ablation against its random draws.

    ``per_sentence``: ``condition, kind, trace, sentence`` and ``metric`` rows. Per condition
    family (baseline, receivers, random): the mean of ``metric`` over sentences (for random,
    the mean, 2.5 and 97.5 % quantiles of the per-draw means), the sentence with the largest
    value per trace, and, for the receivers row, the paired test over sentences against the
    per-sentence mean over draws.
    """
    keys = ["trace", "sentence"]
    by_condition = per_sentence.groupby("condition")[metric].mean()
    random_rows = per_sentence[per_sentence["kind"] == "random"]
    draw_means = random_rows.groupby("condition")[metric].mean().to_numpy(dtype=float)
    random_by_sentence = random_rows.groupby(keys)[metric].mean()
    rows = []
    for kind, group in per_sentence.groupby("kind", sort=True):
        top = group.groupby(["condition", "trace"])[[metric, "sentence"]].apply(
            lambda frame: int(frame.loc[frame[metric].idxmax(), "sentence"])
        )
        row = {
            "kind": kind,
            "n_conditions": group["condition"].nunique(),
            "n_sentences": len(group),
            "mean_importance": float(by_condition.loc[group["condition"].unique()].mean()),
            "q025": math.nan,
            "q975": math.nan,
            "top_sentence_per_trace": "; ".join(
                f"{trace}:{sentence}" for (_, trace), sentence in top.items()
            ),
        }
        if kind == "random" and draw_means.size:
            row |= {
                "q025": float(np.quantile(draw_means, 0.025)),
                "q975": float(np.quantile(draw_means, 0.975)),
            }
        if kind == "receivers":
            row |= paired_test(group.set_index(keys)[metric], random_by_sentence)
            row["n_units"] = row.pop("n_problems")
        rows.append(row)
    return pd.DataFrame(rows)
