"""The planted answer of the demo: the receivers analysis finds the planted head, and the
answer flows through it (baseline right, head zeroed wrong, matched random heads harmless,
x10 amplification harmful, the anchor's patch harmful), for more than one placement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from anchorflow.attention import sentence_attention
from anchorflow.data.demo import write_demo_dataset
from anchorflow.data.problem_sets import record_problems
from anchorflow.interventions.conditions import build_conditions
from anchorflow.interventions.decode import SamplingSettings, generate
from anchorflow.interventions.experiments import experiment_items
from anchorflow.interventions.heads import specs_from_json
from anchorflow.interventions.patching import ResidualPatch, patching_conditions
from anchorflow.interventions.scoring import score_text
from anchorflow.models.demo import build_demo_model
from anchorflow.models.loading import encode_text, load_model
from anchorflow.receivers.blackbox import sentence_table, spearman, top_sentence_agreement
from anchorflow.receivers.heads import head_kurtosis, rank_heads, receiver_scores, vertical_scores
from anchorflow.sentences import sentence_record, split_solution, token_spans

SETTINGS = SamplingSettings(temperature=0.6, top_p=0.95, max_new_tokens=16, batch_size=8)


def demo_records(root: Path, seed: int) -> list[dict]:
    write_demo_dataset(root, seed)
    records = []
    for path in sorted(root.glob("*/*/*/*/base_solution.json")):
        base = json.loads(path.read_text())
        problem = json.loads((path.parent / "problem.json").read_text())
        correctness = path.parent.parent.name.removesuffix("_base_solution")
        number = int(path.parent.name.removeprefix("problem_"))
        records.append(
            {
                "rollouts": "demo",
                "trace": f"{number}_{correctness}",
                "problem": number,
                "correctness": correctness,
                "problem_text": problem["problem"],
                "gt_answer": problem["gt_answer"],
                "level": problem["level"],
                "full_cot": base["full_cot"],
                "chunks": split_solution(base["full_cot"]),
            }
        )
    return records


def receivers_analysis(model, tokenizer, records):
    """Rank-ordered heads by mean kurtosis (layer 0 excluded) and per-sentence scores."""
    vertical = {}
    for record in records:
        text = record["full_cot"]
        sentences = sentence_record(text, "head")
        spans = token_spans(tokenizer, text, [tuple(span) for span in sentences["char_spans"]])
        matrices = sentence_attention(model, encode_text(tokenizer, text), spans.offsets)
        vertical[record["trace"]] = (vertical_scores(matrices), sentences["chunk_idx"])
    kurtosis = np.mean([head_kurtosis(v) for v, _ in vertical.values()], axis=0)
    ranked = [tuple(int(x) for x in head) for head in rank_heads(kurtosis)[:3]]
    return ranked, vertical


def receiver_score_table(vertical, receivers):
    """``trace, chunk_idx, receiver_score`` rows, as the receivers stage's table."""
    import pandas as pd

    return pd.DataFrame(
        [
            {"trace": trace, "chunk_idx": chunk, "receiver_score": score}
            for trace, (matrix, chunks) in vertical.items()
            for chunk, score in zip(
                chunks, receiver_scores(matrix, np.array(receivers)), strict=True
            )
        ]
    )


def check_blackbox_answer(root: Path, records, vertical, receivers) -> None:
    """The white-box / black-box validation finds the demo's planted answer: in every trace the
    top receiver-score sentence is the anchor, the sentence whose black-box importances the
    dataset plants highest."""
    import pandas as pd

    frames = []
    for record in records:
        folder = next(
            root.glob(f"*/*/{record['correctness']}_base_solution/problem_{record['problem']}")
        )
        labels = json.loads((folder / "chunks_labeled.json").read_text())
        scores, chunk_idx = vertical[record["trace"]]
        score = receiver_scores(scores, np.array(receivers))
        chunks = [record["chunks"][i] for i in chunk_idx]
        categories = ["anchor" if "That leaves" in chunk else "other" for chunk in chunks]
        frames.append(
            sentence_table(
                record["trace"],
                chunk_idx,
                categories,
                {"score": score},
                labels,
                ["counterfactual_importance_kl"],
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    tops = frame.loc[frame.groupby("trace")["score"].idxmax(), "category"]
    assert (tops == "anchor").all()
    assert top_sentence_agreement(frame, "score", "counterfactual_importance_kl") == 1.0
    assert spearman(frame["score"], frame["counterfactual_importance_kl"]) > 0


@pytest.mark.parametrize(("layer", "head", "seed"), [(2, 1, 0), (1, 3, 5), (3, 0, 2)])
def test_answer_flows_through_the_head_the_receivers_analysis_finds(tmp_path, layer, head, seed):

    records = demo_records(tmp_path / "data", seed)
    build_demo_model(
        tmp_path / "model",
        [r["full_cot"] for r in records],
        seed=seed,
        planted_layer=layer,
        planted_head=head,
    )
    spec = {"name": "d", "source": "demo", "path": str(tmp_path / "model"), "dtype": "float32"}
    model, tokenizer = load_model(spec)
    receivers, vertical = receivers_analysis(model, tokenizer, records)
    assert receivers[0] == (layer, head)
    check_blackbox_answer(tmp_path / "data", records, vertical, receivers)

    section = {
        "seed": 0,
        "receiver_heads": {"exclude_from_random": None},
        "amplification": {
            "enabled": True,
            "head_set_sizes": [1],
            "scales": [1.0, 10],
            "n_random_draws": 3,
        },
        "ablation": {"enabled": True, "op": "zero", "max_heads": 1, "n_random_draws": 3},
        "counterfactual": {"enabled": False},
        "patching": {
            "enabled": True,
            "n_random_draws": 3,
            "exclude_top": 3,
            "length_tolerance": 0.5,
        },
    }
    conditions = build_conditions(section, receivers, 4, 4)
    params = {
        "seed": 0,
        "paired_seeds": True,
        "prompt_format": "raw",
        "problems": {
            "source": "records",
            "accuracy_min": 0,
            "accuracy_max": 1,
            "n_problems": None,
            "prefix": "reasoning",
        },
        "experiment": {"samples_per_problem": 2},
    }

    problems = record_problems(records)

    def accuracy(experiment, name, spec, patch=None):
        items = experiment_items(
            experiment, params, name, tokenizer, problems, records, condition_spec=spec
        )
        rows = generate(
            model,
            tokenizer,
            items,
            SETTINGS,
            specs_from_json(spec.get("interventions", [])),
            patch=patch,
        )
        scored = [score_text(row["text"], row["gt_answer"]) for row in rows]
        return np.mean([s["correct"] and s["finished"] for s in scored]), rows

    ablation = conditions["ablation"]
    baseline, _ = accuracy("ablation", "baseline", ablation["baseline"])
    assert baseline >= 0.8
    assert accuracy("ablation", "top1_zero", ablation["top1_zero"])[0] <= 0.2
    random = [
        accuracy("ablation", f"random1_zero_draw{d}", ablation[f"random1_zero_draw{d}"])[0]
        for d in range(3)
    ]
    assert abs(np.mean(random) - baseline) <= 0.1
    amplification = conditions["amplification"]
    _, amplification_rows = accuracy("amplification", "baseline", amplification["baseline"])
    _, noop_rows = accuracy("amplification", "top1_x1", amplification["top1_x1"])
    assert [r["text"] for r in noop_rows] == [r["text"] for r in amplification_rows]
    assert accuracy("amplification", "top1_x10", amplification["top1_x10"])[0] < baseline

    scores = receiver_score_table(vertical, receivers)
    problems = [r | {"trace": r["trace"]} for r in records if r["correctness"] == "correct"]
    patching, chosen = patching_conditions(section, scores, problems)
    anchors = chosen[chosen["condition"] == "anchor"]["sentence"]
    assert all(sentence.startswith("That leaves ") for sentence in anchors)
    patch = ResidualPatch(layer, "noise", 1.0)
    assert accuracy("patching", "anchor", patching["anchor"], patch)[0] <= 0.2
    control = accuracy("patching", "control_draw0", patching["control_draw0"], patch)[0]
    assert control >= baseline - 0.2
