"""The ``conditions.json`` of a model: its ranked receiver heads, every condition built from them
(:mod:`anchorflow.interventions.conditions`) and the patched sentences. Kept apart from
``conditions``, which the Snakefile imports to name the jobs, so that parsing the workflow does
not import the generation stack."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from anchorflow.interventions.attention_conditions import (
    ATTENTION_EXPERIMENTS,
    SENTENCE_EXPERIMENTS,
    build_attention_conditions,
)
from anchorflow.interventions.attention_ops import AttentionOp
from anchorflow.interventions.conditions import build_conditions, random_draws, top_heads
from anchorflow.interventions.experiments import patching_problems
from anchorflow.interventions.patching import choose_sentences, patching_conditions
from anchorflow.interventions.triggers import category_openings, record_sentences

log = logging.getLogger(__name__)


def ranked_receivers(
    section: Mapping[str, Any], receiver_heads: pd.DataFrame | None
) -> tuple[list[tuple[int, int]], str]:
    """The receiver heads in rank order and where they came from: the config's
    ``receiver_heads.heads`` when given, else ``receiver_heads.tsv`` without the excluded
    layers."""
    if section["receiver_heads"]["heads"]:
        return [tuple(head) for head in section["receiver_heads"]["heads"]], "config"
    excluded_layers = set(section["receiver_heads"]["exclude_layers"])
    ranked = receiver_heads.sort_values("rank")
    receivers = [
        (int(row.layer), int(row.head))
        for row in ranked.itertuples()
        if int(row.layer) not in excluded_layers
    ]
    return receivers, "receiver_heads.tsv"


def resolve_conditions(
    section: Mapping[str, Any],
    model: str,
    n_layers: int,
    n_heads: int,
    receiver_heads: pd.DataFrame | None,
    receiver_scores: pd.DataFrame | None,
    records: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """Every condition of the interventions ``section`` for a model of ``n_layers x n_heads``:
    receiver and matched random heads, and with patching enabled the patched sentences of the
    patching problems among ``records`` (the model's rollouts). ``receiver_heads`` (the
    ``receiver_heads.tsv`` table) is needed unless the config names the heads, and
    ``receiver_scores`` only for patching. The ``conditions.json`` document: ``conditions``,
    ``patching_sentences``, ``params``."""
    receivers, source = ranked_receivers(section, receiver_heads)
    log.info(
        "%d receiver heads from %s; model has %d layers x %d heads",
        len(receivers),
        source,
        n_layers,
        n_heads,
    )
    conditions = build_conditions(section, receivers, n_layers, n_heads)
    params = {
        "model": model,
        "receivers": [list(head) for head in receivers],
        "receivers_source": source,
        "n_layers": n_layers,
        "n_heads": n_heads,
        "seed": section["seed"],
    }
    sentences = []
    if section["patching"]["enabled"]:
        problems = patching_problems(records, section["patching"]["traces"])
        conditions["patching"], chosen = patching_conditions(section, receiver_scores, problems)
        layer = section["patching"]["layer"]
        params["patch_layer"] = receivers[0][0] if layer is None else layer
        sentences = chosen.to_dict(orient="records")
        log.info(
            "patching at layer %d: anchors %s",
            params["patch_layer"],
            conditions["patching"]["anchor"]["sentences"],
        )
    chosen_sentences = {}
    for experiment in ATTENTION_EXPERIMENTS:
        settings = section.get(experiment)
        if not settings or not settings["enabled"]:
            continue
        conditions[experiment], chosen = attention_conditions(
            section, experiment, receivers, n_heads, receiver_scores, records
        )
        if chosen is not None:
            chosen_sentences[experiment] = chosen.to_dict(orient="records")
        for spec in conditions[experiment].values():
            if "attention" in spec:
                AttentionOp.from_dict(spec["attention"]).selection(n_layers, n_heads)
    return {
        "conditions": conditions,
        "patching_sentences": sentences,
        "attention_sentences": chosen_sentences,
        "params": params,
    }


def trigger_strings(settings: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The dynamic trigger's strings: the configured ``trigger_strings``, then the most frequent
    openings of the sentences the records' labels tag with ``trigger_category``."""
    strings = list(settings["trigger_strings"])
    category = settings["trigger_category"]
    if category:
        strings += category_openings(
            record_sentences(records),
            category,
            settings["opening_words"],
            settings["top_openings"],
        )
    if not strings:
        raise ValueError(
            "interventions.dynamic_amplification needs trigger_strings or a trigger_category"
        )
    return list(dict.fromkeys(strings))


def attention_conditions(
    section: Mapping[str, Any],
    experiment: str,
    receivers: Sequence[tuple[int, int]],
    n_heads: int,
    receiver_scores: pd.DataFrame | None,
    records: Sequence[Mapping[str, Any]],
) -> tuple[dict[str, dict[str, Any]], pd.DataFrame | None]:
    """The conditions of one attention experiment and, for the sentence experiments, the
    table of its chosen anchor and control sentences."""
    settings = section[experiment]
    targets = top_heads(receivers, settings["n_heads"])
    draws = random_draws(
        section, experiment, receivers, targets, n_heads, settings["n_random_draws"]
    )
    if experiment not in SENTENCE_EXPERIMENTS:
        strings = trigger_strings(settings, records)
        log.info("%s: trigger strings %s", experiment, strings)
        return build_attention_conditions(
            experiment, settings, targets, draws, trigger_strings=strings
        ), None
    if receiver_scores is None:
        raise ValueError(f"{experiment} needs the receivers stage's receiver_scores.tsv")
    problems = patching_problems(records, settings["traces"])
    anchors, controls, chosen = choose_sentences(
        settings, section["seed"], experiment, receiver_scores, problems
    )
    log.info("%s: anchors %s", experiment, anchors)
    conditions = build_attention_conditions(experiment, settings, targets, draws, anchors, controls)
    return conditions, chosen
