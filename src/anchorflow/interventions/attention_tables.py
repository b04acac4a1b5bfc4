"""Tables of the attention experiments (docs/METHODS.md "Attention interventions"): each
receiver-head condition against its matched random heads and, for anchor attention, against the
same op on matched control sentences."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from anchorflow.interventions.tables import answer_change_rate, receiver_vs_random

CONTROL_FAMILIES = {"random": "random heads", "control": "control sentences"}
MATCH_ON = ["op", "k", "scale"]
RENAMED = {
    "receiver_accuracy": "accuracy",
    "receiver_ci_low": "ci_low",
    "receiver_ci_high": "ci_high",
    "random_mean": "control_mean",
    "random_q025": "control_q025",
    "random_q975": "control_q975",
}


def _as_draws(
    conditions: Mapping[str, Mapping[str, Any]], kind: str
) -> dict[str, Mapping[str, Any]]:
    """The baseline, the receiver conditions and the ``kind`` conditions, the latter relabelled
    ``random`` (the draws :func:`receiver_vs_random` compares against)."""
    return {
        name: ({**spec, "kind": "random"} if spec["kind"] == kind else spec)
        for name, spec in conditions.items()
        if spec["kind"] in ("baseline", "receivers", kind)
    }


def attention_table(
    scored: pd.DataFrame, conditions: Mapping[str, Mapping[str, Any]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(table, draws)`` of one attention experiment.

    ``table``: the baseline, then one row per receiver condition and control family
    (``control``: random heads or control sentences) with its accuracy, 95 % Wilson interval,
    the controls' mean and 2.5-97.5 % range over draws, the Wilcoxon test over problems, the
    share of answers changed from the baseline's and, where a trigger gates the op, the mean
    number of gated steps. ``draws``: every control condition's accuracy.
    """
    tables, draws = [], []
    for kind, label in CONTROL_FAMILIES.items():
        if not any(spec["kind"] == kind for spec in conditions.values()):
            continue
        subset = _as_draws(conditions, kind)
        rows = scored[scored["condition"].isin(list(subset))]
        summary, drawn = receiver_vs_random(rows, subset, match_on=MATCH_ON)
        summary.insert(1, "control", ["" if i == 0 else label for i in range(len(summary))])
        tables.append(summary if not tables else summary.iloc[1:])
        draws.append(drawn.assign(control=label))
    table = pd.concat(tables, ignore_index=True).rename(columns=RENAMED)
    draw_table = pd.concat(draws, ignore_index=True)
    names = set(table["condition"]) | set(draw_table["condition"])
    changed = pd.Series({name: answer_change_rate(scored, name) for name in names})
    gated = scored.groupby("condition")["gated_steps"].mean() if "gated_steps" in scored else None
    for frame in (table, draw_table):
        frame["answer_change_rate"] = frame["condition"].map(changed)
        if gated is not None:
            frame["mean_gated_steps"] = frame["condition"].map(gated)
    return table, draw_table.drop(columns=["draw_seed"])


def attention_details(resolved: Mapping[str, Any], experiment: str) -> pd.DataFrame:
    """What the experiment acted on, from ``conditions.json``: the chosen anchor and control
    sentences (``trace, condition, chunk_idx, receiver_score, ...``), or for the dynamic
    experiment the trigger (``trigger, n_steps``)."""
    chosen = resolved.get("attention_sentences", {}).get(experiment)
    if chosen is not None:
        return pd.DataFrame(chosen)
    triggers = {
        (text, spec["trigger"]["n_steps"])
        for spec in resolved["conditions"][experiment].values()
        if "trigger" in spec
        for text in spec["trigger"]["strings"]
    }
    return pd.DataFrame(sorted(triggers), columns=["trigger", "n_steps"])
