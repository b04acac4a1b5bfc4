"""The attention experiments: triggers and gated (dynamic) head ops, condition building, the
tables against a direct computation, and the planted answer at two placements."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_attention_ops import PROMPTS, WORDS, sharp_model
from test_intervention_tables import scored_frame
from test_planted_answer import SETTINGS, demo_records, receiver_score_table, receivers_analysis

from anchorflow.data.problem_sets import record_problems
from anchorflow.interventions.attention_conditions import (
    attention_condition_names,
    build_attention_conditions,
)
from anchorflow.interventions.attention_ops import AttentionOp
from anchorflow.interventions.attention_tables import attention_table
from anchorflow.interventions.checks import merged_config
from anchorflow.interventions.decode import GenerationItem, SamplingSettings, generate
from anchorflow.interventions.experiments import experiment_items
from anchorflow.interventions.heads import HeadIntervention, specs_from_json
from anchorflow.interventions.resolve import attention_conditions, trigger_strings
from anchorflow.interventions.scoring import score_text
from anchorflow.interventions.triggers import (
    Trigger,
    category_openings,
    completes_trigger,
    token_fires,
)
from anchorflow.models.demo import build_demo_model
from anchorflow.models.loading import load_model
from anchorflow.models.tiny import word_level_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def test_a_trigger_fires_only_when_new_text_completes_a_string():
    assert completes_trigger("So, Let me", "So, Let me check", ["Let me check"])
    assert completes_trigger("x", "x Wait", ["Wait", "never"])
    assert not completes_trigger("Wait, ok", "Wait, ok.", ["Wait"])  # an old occurrence
    assert not completes_trigger("Wai", "Wai", ["Wait"])
    tokenizer = word_level_tokenizer(WORDS)
    ids = tokenizer("w3 w4 w5")["input_ids"]
    assert token_fires(tokenizer, ids, ["w4 w5"])
    assert not token_fires(tokenizer, ids[:2], ["w4 w5"])
    assert Trigger.from_dict(Trigger(("a", "b"), 3).to_dict()) == Trigger(("a", "b"), 3)
    with pytest.raises(ValueError, match="non-empty strings"):
        Trigger(("a", ""), 1)
    with pytest.raises(ValueError, match="n_steps must be at least 1"):
        Trigger(("a",), 0)


def test_category_openings_and_trigger_strings_from_labels():
    labelled = [
        ("Wait, that is wrong.", ["uncertainty_management"]),
        ("Let me check this.", ["self_checking"]),
        ("Wait, no.", ["uncertainty_management"]),
        ("Hmm, maybe not.", ["uncertainty_management"]),
    ]
    assert category_openings(labelled, "uncertainty_management", 1, 5) == ("Wait,", "Hmm,")
    assert category_openings(labelled, "uncertainty_management", 1, 1) == ("Wait,",)
    with pytest.raises(ValueError, match="no labelled sentence has the category"):
        category_openings(labelled, "final_answer_emission", 1, 5)
    records = [{"labels": [{"chunk": s, "function_tags": t} for s, t in labelled]}]
    settings = {
        "trigger_strings": ["Wait,"],
        "trigger_category": "self_checking",
        "opening_words": 2,
        "top_openings": 5,
    }
    assert trigger_strings(settings, records) == ["Wait,", "Let me"]
    with pytest.raises(ValueError, match="needs trigger_strings or a trigger_category"):
        trigger_strings({**settings, "trigger_strings": [], "trigger_category": None}, records)


def test_a_gated_head_op_acts_only_after_the_trigger_and_only_on_its_row():
    model, tokenizer = sharp_model(), word_level_tokenizer(WORDS)
    items = [GenerationItem(str(i), p, i) for i, p in enumerate(PROMPTS[:2])]
    greedy = SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=10, batch_size=2)
    plain = [r["text"].split() for r in generate(model, tokenizer, items, greedy)]
    heads = [HeadIntervention(layer, h, "scale", 10.0) for layer in (0, 1) for h in range(4)]
    static = [r["text"].split() for r in generate(model, tokenizer, items, greedy, heads)]
    assert static != plain
    trigger = Trigger((plain[0][2],), 3)  # the first row's third token
    assert plain[0][2] not in plain[1]
    gated = generate(model, tokenizer, items, greedy, heads, trigger=trigger)
    assert gated[1]["text"].split() == plain[1] and gated[1]["gated_steps"] == 0
    first = gated[0]["text"].split()
    assert first[:3] == plain[0][:3] and first != plain[0]
    assert gated[0]["gated_steps"] == 3
    never = Trigger(("w999",), 3)
    assert [
        r["text"].split() for r in generate(model, tokenizer, items, greedy, heads, trigger=never)
    ] == plain


def test_condition_names_match_the_built_conditions_and_controls_are_matched():
    section = merged_config(["demo/config.yaml"], ROOT)["interventions"]
    names = attention_condition_names(section)
    assert set(names) == {
        "anchor_attention",
        "attention_patterns",
        "reroute",
        "dynamic_amplification",
    }
    draws = [(d, [(2, d % 4)]) for d in range(10)]
    anchors, controls = {"101_correct": 5}, [{"101_correct": 2 + d % 3} for d in range(10)]
    for experiment, expected in names.items():
        built = build_attention_conditions(
            experiment, section[experiment], [(2, 1)], draws, anchors, controls, ["\\boxed{"]
        )
        assert list(built) == expected
        for spec in built.values():
            if "attention" in spec:
                AttentionOp.from_dict(spec["attention"]).selection(4, 4)
    anchor = build_attention_conditions(
        "anchor_attention", section["anchor_attention"], [(2, 1)], draws, anchors, controls
    )
    assert anchor["top1_anchor_x0"]["sentences"] == anchors
    assert anchor["top1_control_x0_draw3"]["sentences"] == controls[3]
    assert anchor["top1_control_x0_draw3"]["heads"] == [[2, 1]]
    assert anchor["random1_anchor_x0_draw3"]["heads"] == [[2, 3]]
    reroute = build_attention_conditions(
        "reroute", section["reroute"], [(2, 1)], draws, anchors, controls
    )
    assert reroute["top1_reroute"]["targets"] == controls[0]
    with pytest.raises(ValueError, match="needs an anchor and control sentences"):
        build_attention_conditions("reroute", section["reroute"], [(2, 1)], draws)
    with pytest.raises(ValueError, match="3 random draws for 10 configured"):
        build_attention_conditions(
            "reroute", section["reroute"], [(2, 1)], draws[:3], anchors, controls
        )


def test_attention_table_against_a_direct_computation():
    settings = {"enabled": True, "scales": [0.0], "n_heads": 1, "n_random_draws": 3}
    draws = [(10 + d, [(2, d)]) for d in range(3)]
    conditions = build_attention_conditions(
        "anchor_attention", settings, [(2, 1)], draws, {"t": 1}, [{"t": 2}] * 3
    )
    accuracy = {"baseline": [1, 1, 1, 0.75, 1], "top1_anchor_x0": [0, 0, 0.25, 0, 0]}
    accuracy |= {f"top1_control_x0_draw{d}": [1, 0.75, 1, 1, 1 - 0.25 * d] for d in range(3)}
    accuracy |= {f"random1_anchor_x0_draw{d}": [1, 1, 0.5 + 0.25 * d, 1, 1] for d in range(3)}
    table, per_draw = attention_table(scored_frame(accuracy), conditions)
    assert list(table["condition"]) == ["baseline", "top1_anchor_x0", "top1_anchor_x0"]
    assert list(table["control"]) == ["", "random heads", "control sentences"]
    for row, prefix in ((table.iloc[1], "random1_anchor"), (table.iloc[2], "top1_control")):
        means = [np.mean(accuracy[f"{prefix}_x0_draw{d}"]) for d in range(3)]
        assert row["control_mean"] == pytest.approx(np.mean(means))
        assert row["control_q975"] == pytest.approx(np.quantile(means, 0.975))
        assert row["accuracy"] == pytest.approx(0.05) and row["n_draws"] == 3
    assert "answer_change_rate" in table and "mean_gated_steps" not in table
    assert len(per_draw) == 6 and set(per_draw["control"]) == {"random heads", "control sentences"}


PLANTED_CONDITIONS = {
    "anchor_attention": [
        "baseline",
        "top1_anchor_x0",
        "top1_anchor_x2",
        "top1_control_x0_draw0",
        "random1_anchor_x0_draw0",
    ],
    "attention_patterns": ["top1_uniform", "top1_hub", "random1_uniform_draw0"],
    "reroute": ["top1_reroute", "random1_reroute_draw0"],
    "dynamic_amplification": ["top1_static_x5", "top1_dynamic_x5"],
}


def attention_accuracy(model, tokenizer, experiment, params, records, spec) -> float:
    """Strict accuracy of one condition's generations (the workflow's items and ops)."""
    problems = record_problems(records)
    items = experiment_items(experiment, params, "c", tokenizer, problems, records, None, spec)
    attention = AttentionOp.from_dict(spec["attention"]) if "attention" in spec else None
    trigger = Trigger.from_dict(spec["trigger"]) if "trigger" in spec else None
    rows = generate(
        model,
        tokenizer,
        items,
        SETTINGS,
        specs_from_json(spec.get("interventions", [])),
        attention=attention,
        trigger=trigger,
    )
    scored = [score_text(row["text"], row["gt_answer"]) for row in rows]
    return float(np.mean([s["correct"] and s["finished"] for s in scored]))


@pytest.mark.parametrize(("layer", "head", "seed"), [(2, 1, 0), (1, 3, 5), (3, 0, 2)])
def test_attention_experiments_find_the_planted_head(tmp_path, layer, head, seed):
    """The demo's targets at three placements, with the workflow's sentence choice and two draws:
    the anchor's attention suppressed, uniform and rerouted break the answer; the same op on a
    control sentence, the hub on the anchor and the op on random heads keep it; x5 switched on
    by the trigger keeps the answer that static x5 breaks."""
    records = demo_records(tmp_path / "data", seed)
    build_demo_model(
        tmp_path / "model",
        [r["full_cot"] for r in records],
        seed=seed,
        planted_layer=layer,
        planted_head=head,
    )
    spec = {"name": "d", "source": "demo", "path": str(tmp_path / "model"), "dtype": "float32"}
    model, tokenizer = load_model(spec, attn_implementation="sdpa")
    receivers, vertical = receivers_analysis(model, tokenizer, records)
    assert receivers[0] == (layer, head)
    scores = receiver_score_table(vertical, receivers)
    section = merged_config(["demo/config.yaml"], ROOT)["interventions"]
    params = {key: section[key] for key in ("seed", "paired_seeds", "prompt_format", "problems")}
    accuracy = {}
    for experiment, names in PLANTED_CONDITIONS.items():
        section[experiment] |= {"n_random_draws": 2, "samples_per_problem": 2}
        conditions, _ = attention_conditions(section, experiment, receivers, 4, scores, records)
        run = params | {"experiment": section[experiment]}
        for name in names:
            accuracy[name] = attention_accuracy(
                model, tokenizer, experiment, run, records, conditions[name]
            )
    assert accuracy["baseline"] >= 0.8
    for broken in ("top1_anchor_x0", "top1_uniform", "top1_reroute", "top1_static_x5"):
        assert accuracy[broken] <= 0.2, broken
    for kept in ("top1_control_x0_draw0", "top1_hub", "top1_dynamic_x5", "top1_anchor_x2"):
        assert accuracy[kept] >= 0.8, kept
    for random in ("random1_anchor_x0_draw0", "random1_uniform_draw0", "random1_reroute_draw0"):
        assert abs(accuracy[random] - accuracy["baseline"]) <= 0.1, random
