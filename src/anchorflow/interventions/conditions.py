"""The intervention conditions of an experiment: receiver heads, matched random draws (layer
strata, exclusions) and controls, named and grouped into jobs (method reference §9.6-§9.8)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from anchorflow.interventions.attention_conditions import (
    ATTENTION_EXPERIMENTS,
    attention_condition_names,
)
from anchorflow.interventions.heads import HeadIntervention, specs_to_json, stable_seed


def top_heads(receivers: Sequence[tuple[int, int]], k: int) -> list[tuple[int, int]]:
    """The first ``k`` heads of a rank-ordered receiver list ``[(layer, head), ...]``."""
    if k > len(receivers):
        raise ValueError(f"asked for the top {k} receiver heads but only {len(receivers)} exist")
    return list(receivers[:k])


def draw_matched_heads(
    targets: Sequence[tuple[int, int]],
    n_heads: int,
    excluded: Sequence[tuple[int, int]],
    seed: int,
) -> list[tuple[int, int]]:
    """Random heads with the same layer distribution as ``targets``, none of them in
    ``excluded`` (and no head twice), drawn with ``random.Random(seed)``."""
    rng = random.Random(seed)
    taken = set(excluded)
    drawn = []
    for layer, _ in targets:
        pool = [(layer, head) for head in range(n_heads) if (layer, head) not in taken]
        if not pool:
            raise ValueError(f"layer {layer} has no head left to draw (all excluded or taken)")
        choice = rng.choice(pool)
        taken.add(choice)
        drawn.append(choice)
    return drawn


def heads_to_interventions(
    heads: Sequence[tuple[int, int]], op: str, value: float | None = None
) -> list[HeadIntervention]:
    """The same op on each head."""
    return [HeadIntervention(int(layer), int(head), op, value) for layer, head in heads]


EXPERIMENTS = ("amplification", "ablation", "counterfactual", "patching", *ATTENTION_EXPERIMENTS)


def _ablation_names(op: str, max_heads: int, n_draws: int) -> list[str]:
    names = [f"top{k}_{op}" for k in range(1, max_heads + 1)]
    names += [f"random{k}_{op}_draw{d}" for d in range(n_draws) for k in range(1, max_heads + 1)]
    return names


def condition_names(section: Mapping[str, Any]) -> dict[str, list[str]]:
    """Condition names per enabled experiment, from the ``interventions`` config alone."""
    names: dict[str, list[str]] = {}
    amplification = section["amplification"]
    if amplification["enabled"]:
        pairs = [
            (k, scale) for k in amplification["head_set_sizes"] for scale in amplification["scales"]
        ]
        names["amplification"] = ["baseline"] + [f"top{k}_x{scale:g}" for k, scale in pairs]
        names["amplification"] += [
            f"random{k}_x{scale:g}_draw{d}"
            for d in range(amplification["n_random_draws"])
            for k, scale in pairs
        ]
    ablation = section["ablation"]
    if ablation["enabled"]:
        names["ablation"] = ["baseline"] + _ablation_names(
            ablation["op"], ablation["max_heads"], ablation["n_random_draws"]
        )
    counterfactual = section["counterfactual"]
    if counterfactual["enabled"]:
        k, op = counterfactual["n_heads"], counterfactual["op"]
        names["counterfactual"] = ["baseline", f"top{k}_{op}"] + [
            f"random{k}_{op}_draw{d}" for d in range(counterfactual["n_random_draws"])
        ]
    patching = section["patching"]
    if patching["enabled"]:
        names["patching"] = ["baseline", "anchor"] + [
            f"control_draw{d}" for d in range(patching["n_random_draws"])
        ]
    return names | attention_condition_names(section)


def condition_groups(names: Sequence[str], per_job: int) -> list[list[str]]:
    """Consecutive groups of at most ``per_job`` condition names (one generation job each)."""
    if per_job < 1:
        raise ValueError(f"conditions per job must be positive, got {per_job}")
    return [list(names[start : start + per_job]) for start in range(0, len(names), per_job)]


def _condition(
    kind: str, heads: Sequence[tuple[int, int]], op: str, value: float | None, **extra: Any
) -> dict[str, Any]:
    interventions = heads_to_interventions(heads, op, value)
    return {
        "kind": kind,
        "heads": [list(head) for head in heads],
        "interventions": specs_to_json(interventions),
        **extra,
    }


def random_pool_exclusions(
    receivers: Sequence[tuple[int, int]], targets: Sequence[tuple[int, int]], exclude_top: int
) -> list[tuple[int, int]]:
    """Heads no random draw may contain: the top ``exclude_top`` receiver heads (the receiver
    set) and every targeted head."""
    return sorted(set(receivers[:exclude_top]) | set(targets))


def random_draws(
    section: Mapping[str, Any],
    experiment: str,
    receivers: Sequence[tuple[int, int]],
    targets: Sequence[tuple[int, int]],
    n_heads: int,
    n_draws: int,
) -> list[tuple[int, list[tuple[int, int]]]]:
    """``[(seed, heads)]`` per draw: layer-matched to ``targets``, outside the receiver set."""
    excluded = random_pool_exclusions(
        receivers, targets, section["receiver_heads"]["exclude_from_random"]
    )
    draws = []
    for draw in range(n_draws):
        seed = stable_seed(section["seed"], "random_heads", experiment, draw)
        draws.append((seed, draw_matched_heads(targets, n_heads, excluded, seed)))
    return draws


def build_conditions(
    section: Mapping[str, Any], receivers: Sequence[tuple[int, int]], n_layers: int, n_heads: int
) -> dict[str, dict[str, dict[str, Any]]]:
    """Resolve every head condition to its heads and intervention specs.

    ``receivers``: rank-ordered ``(layer, head)`` receiver heads. Random heads are matched to
    the targeted receiver heads' layers, exclude the top ``receiver_heads.exclude_from_random``
    receiver heads (and the targets), are drawn once per draw for the largest set (so smaller
    sets are nested prefixes, and every amplification scale of a draw uses the same heads) and
    are recorded with their seed. Returns ``{experiment: {condition: {kind, heads,
    interventions, ...}}}`` with keys matching :func:`condition_names` (patching excepted: see
    :func:`anchorflow.interventions.patching.patching_conditions`).
    """
    for layer, head in receivers:
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise ValueError(f"receiver head L{layer}H{head} is outside the model")
    resolved: dict[str, dict[str, dict[str, Any]]] = {}
    amplification = section["amplification"]
    if amplification["enabled"]:
        targets = top_heads(receivers, max(amplification["head_set_sizes"]))
        draws = random_draws(
            section, "amplification", receivers, targets, n_heads, amplification["n_random_draws"]
        )
        conditions = {"baseline": _condition("baseline", [], "scale", None)}
        pairs = [
            (k, float(s)) for k in amplification["head_set_sizes"] for s in amplification["scales"]
        ]
        for k, scale in pairs:
            conditions[f"top{k}_x{scale:g}"] = _condition(
                "receivers", targets[:k], "scale", scale, k=k, scale=scale
            )
        for draw, (seed, drawn) in enumerate(draws):
            for k, scale in pairs:
                conditions[f"random{k}_x{scale:g}_draw{draw}"] = _condition(
                    "random", drawn[:k], "scale", scale, k=k, scale=scale, draw=draw, draw_seed=seed
                )
        resolved["amplification"] = conditions
    for experiment in ("ablation", "counterfactual"):
        settings = section[experiment]
        if not settings["enabled"]:
            continue
        op = settings["op"]
        sizes = (
            list(range(1, settings["max_heads"] + 1))
            if experiment == "ablation"
            else [settings["n_heads"]]
        )
        targets = top_heads(receivers, max(sizes))
        draws = random_draws(
            section, experiment, receivers, targets, n_heads, settings["n_random_draws"]
        )
        conditions = {"baseline": _condition("baseline", [], op, None)}
        for k in sizes:
            conditions[f"top{k}_{op}"] = _condition("receivers", targets[:k], op, None, k=k)
        for draw, (seed, drawn) in enumerate(draws):
            for k in sizes:
                conditions[f"random{k}_{op}_draw{draw}"] = _condition(
                    "random", drawn[:k], op, None, k=k, draw=draw, draw_seed=seed
                )
        resolved[experiment] = conditions
    return resolved
