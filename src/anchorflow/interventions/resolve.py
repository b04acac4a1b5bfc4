"""The ``conditions.json`` of a model: its ranked receiver heads, every condition built from them
(:mod:`anchorflow.interventions.conditions`) and the patched sentences. Kept apart from
``conditions``, which the Snakefile imports to name the jobs, so that parsing the workflow does
not import the generation stack."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from anchorflow.interventions.conditions import build_conditions
from anchorflow.interventions.experiments import patching_problems
from anchorflow.interventions.patching import patching_conditions

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
    return {"conditions": conditions, "patching_sentences": sentences, "params": params}
