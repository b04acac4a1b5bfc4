"""The conditions of the attention experiments (docs/METHODS.md "Attention interventions"):
anchor attention scaled, head patterns forced, the anchor rerouted, and amplification switched
on by a trigger, each against matched random heads (and matched control sentences).

Names come from the config alone (:func:`attention_condition_names`, imported when the workflow
is parsed, so nothing here imports torch); :func:`build_attention_conditions` resolves them to
heads, attention-op specs and sentences. A condition's ``attention`` is an
:class:`anchorflow.interventions.attention_ops.AttentionOp` as a dict; its ``sentences`` and
``targets`` map each trace to the chunk index of its span (A) and, for a reroute, its target (B).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from anchorflow.interventions.heads import HeadIntervention, specs_to_json

ATTENTION_EXPERIMENTS = (
    "anchor_attention",
    "attention_patterns",
    "reroute",
    "dynamic_amplification",
)
SENTENCE_EXPERIMENTS = ("anchor_attention", "attention_patterns", "reroute")


def attention_condition_names(section: Mapping[str, Any]) -> dict[str, list[str]]:
    """Condition names per enabled attention experiment of the interventions ``section`` (an
    experiment without a section is off)."""
    names: dict[str, list[str]] = {}
    for experiment in ATTENTION_EXPERIMENTS:
        settings = section.get(experiment)
        if settings and settings["enabled"]:
            names[experiment] = list(_specs(experiment, settings, _NAMES_ONLY))
    return names


def _heads_op(heads: Sequence[Sequence[int]], **op: Any) -> dict[str, Any]:
    """An attention-op dict on ``heads`` (the fields of ``AttentionOp.to_dict``)."""
    spec = {"op": None, "layers": [], "scale": None, "pattern": None, "fraction": None, **op}
    return {**spec, "heads": [list(head) for head in heads]}


# The op fields of a condition on the given heads (its attention op or head interventions).
HeadFields = Callable[[Sequence[Any]], dict[str, Any]]

_NAMES_ONLY: dict[str, Any] = {"targets": [], "draws": [], "anchors": {}, "controls": []}


def _specs(
    experiment: str, settings: Mapping[str, Any], chosen: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """Every condition of one experiment. ``chosen``: ``targets`` (the top receiver heads),
    ``draws`` (``[(seed, heads)]`` per random draw), ``anchors`` (trace -> chunk) and
    ``controls`` (one trace -> chunk map per control draw); empty when only naming."""
    k, n_draws = settings["n_heads"], settings["n_random_draws"]
    targets, anchors, controls = chosen["targets"], chosen["anchors"], chosen["controls"]
    draws = chosen["draws"] or [(None, [])] * n_draws
    specs: dict[str, dict[str, Any]] = {"baseline": {"kind": "baseline", "heads": []}}

    def add(name: str, kind: str, heads: Sequence[Any], draw: int, **spec: Any) -> None:
        extra = {} if draw < 0 else {"draw": draw}
        if kind == "random":
            extra["draw_seed"] = draws[draw][0]
        specs[name] = {"kind": kind, "k": k, "heads": [list(h) for h in heads], **extra, **spec}

    def control(draw: int) -> dict[str, int]:
        return dict(controls[draw]) if controls else {}

    def add_receivers(name: str, on_heads: HeadFields, **spec: Any) -> None:
        """``top{k}_{name}``: the top receiver heads, ``on_heads(heads)`` their op fields."""
        add(f"top{k}_{name}", "receivers", targets, -1, **on_heads(targets), **spec)

    def add_random(name: str, on_heads: HeadFields, **spec: Any) -> None:
        """``random{k}_{name}_draw{d}``: the same op on each draw of matched random heads."""
        for d in range(n_draws):
            heads = draws[d][1]
            add(f"random{k}_{name}_draw{d}", "random", heads, d, **on_heads(heads), **spec)

    if experiment == "anchor_attention":
        for scale in (float(s) for s in settings["scales"]):
            op = {"op": "scale_to_span", "scale": scale}

            def scaled_span(heads: Sequence[Any], op: dict[str, Any] = op) -> dict[str, Any]:
                return {**op, "attention": _heads_op(heads, **op)}

            add_receivers(f"anchor_x{scale:g}", scaled_span, sentences=anchors)
            for d in range(n_draws):
                name = f"top{k}_control_x{scale:g}_draw{d}"
                add(name, "control", targets, d, **scaled_span(targets), sentences=control(d))
            add_random(f"anchor_x{scale:g}", scaled_span, sentences=anchors)
    elif experiment == "attention_patterns":
        for pattern in settings["patterns"]:
            fraction = settings["hub_fraction"] if pattern == "hub" else None
            op = {"op": "pattern", "pattern": pattern, "fraction": fraction}

            def forced(heads: Sequence[Any], op: dict[str, Any] = op) -> dict[str, Any]:
                return {"op": op["pattern"], "attention": _heads_op(heads, **op)}

            spans = {"sentences": anchors} if pattern == "hub" else {}
            add_receivers(pattern, forced, **spans)
            add_random(pattern, forced, **spans)
    elif experiment == "reroute":

        def rerouted(heads: Sequence[Any]) -> dict[str, Any]:
            return {"op": "reroute", "attention": _heads_op(heads, op="reroute")}

        spans = {"sentences": anchors, "targets": control(0)}
        add_receivers("reroute", rerouted, **spans)
        add_random("reroute", rerouted, **spans)
    else:
        trigger = {"strings": list(chosen.get("trigger", ())), "n_steps": settings["n_steps"]}
        for scale in (float(s) for s in settings["scales"]):

            def amplified(heads: Sequence[Any], scale: float = scale) -> dict[str, Any]:
                return {"interventions": _scaled(heads, scale)}

            for mode in ("static", "dynamic"):
                timing = {"trigger": trigger} if mode == "dynamic" else {}
                add_receivers(f"{mode}_x{scale:g}", amplified, op=mode, scale=scale, **timing)
                add_random(f"{mode}_x{scale:g}", amplified, op=mode, scale=scale, **timing)
    return specs


def _scaled(heads: Sequence[Sequence[int]], scale: float) -> list[dict[str, Any]]:
    return specs_to_json(
        [HeadIntervention(int(layer), int(head), "scale", scale) for layer, head in heads]
    )


def build_attention_conditions(
    experiment: str,
    settings: Mapping[str, Any],
    targets: Sequence[tuple[int, int]],
    draws: Sequence[tuple[int, Sequence[tuple[int, int]]]],
    anchors: Mapping[str, int] | None = None,
    controls: Sequence[Mapping[str, int]] = (),
    trigger_strings: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """The conditions of one attention ``experiment`` (keys as
    :func:`attention_condition_names`): ``targets`` the top ``n_heads`` receiver heads,
    ``draws`` ``[(seed, heads)]`` of layer-matched random heads, ``anchors`` and ``controls``
    the sentence choice of the sentence experiments, ``trigger_strings`` the dynamic trigger."""
    if len(draws) != settings["n_random_draws"]:
        raise ValueError(f"{len(draws)} random draws for {settings['n_random_draws']} configured")
    if experiment in SENTENCE_EXPERIMENTS and (anchors is None or not controls):
        raise ValueError(f"{experiment} needs an anchor and control sentences per trace")
    chosen = {
        "targets": list(targets),
        "draws": list(draws),
        "anchors": dict(anchors or {}),
        "controls": list(controls),
        "trigger": list(trigger_strings),
    }
    return _specs(experiment, settings, chosen)
