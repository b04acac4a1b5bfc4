"""Batched generation: left padding, per-row seeds, prompts, problem selection and shards."""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from anchorflow.data.problem_sets import record_problems
from anchorflow.interventions.decode import (
    GenerationItem,
    SamplingSettings,
    generate,
    nucleus_probabilities,
    shard,
)
from anchorflow.interventions.experiments import (
    experiment_items,
    patching_problems,
    problem_items,
    samples_per_problem,
)
from anchorflow.interventions.heads import HeadIntervention, stable_seed
from anchorflow.interventions.prompts import PAPER_PROMPT, build_prompt, sentence_span
from anchorflow.models.tiny import (
    FAMILIES,
    random_causal_lm,
    special_token_ids,
    word_level_tokenizer,
)

WORDS = ["<pad>", "<eos>", "<bos>"] + [f"w{i}" for i in range(45)]


def tiny(family: str):
    model = random_causal_lm(
        family, vocab_size=len(WORDS), max_position_embeddings=128, **special_token_ids()
    )
    return model, word_level_tokenizer(WORDS)


def sharp(family: str):
    """A tiny model with large weights: peaked attention, so its next token depends on the
    positions and the mask (the default 0.02 initialisation averages them away)."""
    model = random_causal_lm(
        family,
        vocab_size=len(WORDS),
        max_position_embeddings=128,
        initializer_range=0.3,
        **special_token_ids(),
    )
    return model, word_level_tokenizer(WORDS)


PROMPTS = ["w3 w4 w5 w6 w7 w8 w9 w10 w11", "w12", "w20 w21 w22", "w30 w31 w32 w33 w34"]


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("interventions", [[], [HeadIntervention(1, 2, "scale", 4.0)]])
def test_alone_and_in_left_padded_batch_give_same_greedy_tokens(family, interventions):
    model, tokenizer = tiny(family)
    items = [GenerationItem(str(i), p, i) for i, p in enumerate(PROMPTS)]
    greedy = SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=12, batch_size=4)
    batched = generate(model, tokenizer, items, greedy, interventions)
    alone = generate(model, tokenizer, items, SamplingSettings(0.0, 1.0, 12, 1), interventions)
    assert [row["text"] for row in batched] == [row["text"] for row in alone]
    assert all(row["n_tokens"] > 0 for row in batched)
    assert batched[0]["batch_items"] == ["0", "1", "2", "3"]
    assert alone[2]["batch_items"] == ["2"]


def test_sampling_is_per_row_deterministic_and_seed_dependent():
    model, tokenizer = tiny("qwen2")
    settings = SamplingSettings(temperature=1.0, top_p=0.95, max_new_tokens=10, batch_size=4)
    items = [GenerationItem(str(i), p, 100 + i) for i, p in enumerate(PROMPTS)]
    first = generate(model, tokenizer, items, settings)
    again = generate(model, tokenizer, items, settings)
    alone = generate(model, tokenizer, items[1:2], settings)
    reseeded = generate(model, tokenizer, [GenerationItem("1", PROMPTS[1], 999)], settings)
    assert [r["text"] for r in first] == [r["text"] for r in again]
    assert alone[0]["text"] == first[1]["text"]
    assert reseeded[0]["text"] != first[1]["text"]


def test_nucleus_matches_transformers_warpers():
    scores = torch.randn(3, 50, generator=torch.Generator().manual_seed(0)) * 3
    ours = nucleus_probabilities(scores, 0.6, 0.95)
    warped = TopPLogitsWarper(0.95)(None, TemperatureLogitsWarper(0.6)(None, scores.clone()))
    torch.testing.assert_close(ours, torch.softmax(warped, dim=-1), rtol=1e-5, atol=1e-7)


def test_prompt_formats():
    assert build_prompt("1+1?", "raw") == (
        "Solve this math problem step by step. You MUST put your final answer in \\boxed{}. "
        "Problem: 1+1? Solution: \n<think>\n"
    )
    assert PAPER_PROMPT.endswith("Solution: \n<think>\n")
    _, tokenizer = tiny("qwen2")
    tokenizer.chat_template = "{% for m in messages %}<u>{{ m['content'] }}{% endfor %}<a>"
    assert build_prompt("2?", "chat", tokenizer).endswith("Problem: 2?<a>")
    with pytest.raises(ValueError):
        build_prompt("x", "fancy")


def test_seeds_are_stable_and_distinct():
    assert stable_seed(0, "amplification", 4682, 1, "baseline") == stable_seed(
        0, "amplification", 4682, 1, "baseline"
    )
    seeds = {
        stable_seed(0, "a", problem, sample, cond)
        for problem in range(5)
        for sample in range(4)
        for cond in ("x", "y")
    }
    assert len(seeds) == 40
    assert all(0 <= seed < 2**63 for seed in seeds)


def _record(problem, correctness, text, answer, chunks, level=""):
    return {
        "rollouts": "r",
        "trace": f"{problem}_{correctness}",
        "problem": problem,
        "correctness": correctness,
        "problem_text": text,
        "gt_answer": answer,
        "level": level,
        "chunks": chunks,
    }


def test_items_and_shards_partition_the_work():
    problems = [{"problem": 5, "gt_answer": "1"}, {"problem": 7, "gt_answer": "2"}]
    items = problem_items(problems, ["a", "b"], 3, (0, "ablation", "baseline"))
    assert [i.item_id for i in items] == ["5/0", "5/1", "5/2", "7/0", "7/1", "7/2"]
    parts = [shard(items, index, 4) for index in range(4)]
    assert sorted(i.item_id for part in parts for i in part) == sorted(i.item_id for i in items)
    with pytest.raises(ValueError):
        shard(items, 4, 4)


def _params(paired: bool) -> dict:
    return {
        "seed": 0,
        "paired_seeds": paired,
        "prompt_format": "raw",
        "problems": {
            "source": "records",
            "accuracy_min": 0,
            "accuracy_max": 1,
            "n_problems": None,
            "prefix": "none",
        },
        "experiment": {
            "samples_per_problem": 2,
            "traces": ["7_correct"],
            "n_resamples": 2,
            "max_sentences": 1,
        },
    }


RECORDS = [_record(7, "correct", "Q", "3", ["One step.", "Two steps."], "Level 2")]
PROBLEMS = record_problems(RECORDS)


def test_experiment_items_paired_and_unpaired_seeds():
    paired = [experiment_items("ablation", _params(True), c, None, PROBLEMS) for c in "ab"]
    unpaired = [experiment_items("ablation", _params(False), c, None, PROBLEMS) for c in "ab"]
    assert [i.seed for i in paired[0]] == [i.seed for i in paired[1]]
    assert not {i.seed for i in unpaired[0]} & {i.seed for i in unpaired[1]}
    assert paired[0][0].meta == {
        "problem": 7,
        "sample": 0,
        "gt_answer": "3",
        "level": "Level 2",
        "thinks": True,
    }
    assert paired[0][0].prompt == build_prompt("Q", "raw")


def test_reasoning_prefix_and_patch_spans():
    params = _params(True)
    params["problems"]["prefix"] = "reasoning"
    items = experiment_items("ablation", params, "a", None, PROBLEMS)
    assert items[0].prompt == build_prompt("Q", "raw") + "One step. Two steps."
    spec = {"kind": "anchor", "sentences": {"7_correct": 1}}
    patched = experiment_items(
        "patching", _params(True), "anchor", None, records=RECORDS, condition_spec=spec
    )
    start, end = patched[0].meta["patch_span"]
    assert patched[0].prompt[start:end] == "Two steps."
    assert patched[0].prompt == items[0].prompt
    # a problem's samples share one patch seed (one prefill serves them)
    assert patched[0].meta["patch_seed"] == patched[1].meta["patch_seed"]
    assert patched[0].seed != patched[1].seed
    unpatched = experiment_items(
        "patching", _params(True), "baseline", None, records=RECORDS, condition_spec={}
    )
    assert "patch_span" not in unpatched[0].meta
    assert sentence_span("P: ", ["A.", "Bb.", "C."], 0) == (3, 5)
    assert sentence_span("P: ", ["A.", "Bb.", "C."], 2) == (10, 12)


def test_experiment_items_counterfactual_prefixes():
    items = experiment_items(
        "counterfactual", _params(True), "base", None, records=RECORDS, rollouts="r"
    )
    assert [i.item_id for i in items] == [
        "7_correct/0/0",
        "7_correct/0/1",
        "7_correct/1/0",
        "7_correct/1/1",
    ]
    assert items[2].prompt == build_prompt("Q", "raw") + "One step."
    assert items[2].meta["prefix"] == 1
    with pytest.raises(ValueError, match="not among"):
        experiment_items(
            "counterfactual", _params(True), "base", None, records=RECORDS, rollouts="x"
        )


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_greedy_decode_loop_equals_transformers_generate(family):
    """Our loop (shared prefill, finished rows dropped) against ``model.generate``, row by row."""
    model, tokenizer = sharp(family)
    settings = SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=12, batch_size=8)
    items = [GenerationItem(f"{i}/{s}", p, i) for i, p in enumerate(PROMPTS) for s in range(2)]
    ours = generate(model, tokenizer, items, settings)
    stop = tokenizer.convert_tokens_to_ids("<eos>")
    for item, row in zip(items, ours, strict=True):
        encoded = tokenizer([item.prompt], return_tensors="pt")
        reference = model.generate(
            **encoded, do_sample=False, max_new_tokens=12, eos_token_id=stop, pad_token_id=0
        )[0, encoded["input_ids"].shape[1] :].tolist()
        stopped = stop in reference
        kept = reference[: reference.index(stop)] if stopped else reference
        assert row["text"] == tokenizer.decode(kept, skip_special_tokens=False)
        assert row["stopped"] == stopped
        assert row["n_tokens"] == len(kept) + int(stopped)


def test_rows_that_stop_early_leave_the_batch_without_changing_the_others():
    """A model whose EOS logit is boosted stops some rows after a few tokens; the rows still
    running give the same tokens as when they run alone."""
    model, tokenizer = sharp("llama")
    stop = tokenizer.convert_tokens_to_ids("<eos>")
    with torch.no_grad():
        model.lm_head.weight[stop] += 3.0 * model.lm_head.weight.abs().mean()
    settings = SamplingSettings(temperature=1.0, top_p=1.0, max_new_tokens=16, batch_size=8)
    items = [GenerationItem(str(i), PROMPTS[i % 4], 50 + i) for i in range(8)]
    batched = generate(model, tokenizer, items, settings)
    alone = [generate(model, tokenizer, [item], settings)[0] for item in items]
    lengths = {row["n_tokens"] for row in batched}
    assert len(lengths) > 3 and batched[0]["stopped"] and not batched[1]["stopped"]
    assert [row["text"] for row in batched] == [row["text"] for row in alone]


def test_answer_cue_is_prompted_and_recorded_for_the_scorer():
    params = _params(True)
    params["experiment"]["answer_cue"] = " So the answer is \\boxed{"
    patched = experiment_items(
        "patching", params, "baseline", None, records=RECORDS, condition_spec={}
    )
    assert patched[0].prompt.endswith("Two steps. So the answer is \\boxed{")
    assert patched[0].meta["answer_cue"] == " So the answer is \\boxed{"
    resampled = experiment_items("counterfactual", params, "b", None, records=RECORDS)
    assert resampled[2].prompt.endswith("One step. So the answer is \\boxed{")
    assert resampled[2].meta["answer_cue"] == " So the answer is \\boxed{"


def test_random_draws_take_their_first_samples():
    settings = {"samples_per_problem": 8, "random_samples_per_problem": 2}
    assert samples_per_problem(settings, {"kind": "random"}) == 2
    assert samples_per_problem(settings, {"kind": "receivers"}) == 8
    assert samples_per_problem(settings, {"kind": "baseline"}) == 8
    assert samples_per_problem({"samples_per_problem": 8}, {"kind": "random"}) == 8
    params = _params(True)
    params["experiment"]["random_samples_per_problem"] = 1
    receivers = experiment_items("ablation", params, "top1", None, PROBLEMS, condition_spec={})
    random = experiment_items(
        "ablation", params, "random1", None, PROBLEMS, condition_spec={"kind": "random"}
    )
    assert [i.seed for i in random] == [i.seed for i in receivers[:1]]


def test_patching_problems_by_trace():
    records = [
        _record(7, "incorrect", "Q", "3", ["Wrong."]),
        _record(5, "correct", "R", "9", ["Nine."]),
        _record(7, "correct", "Q", "3", ["Right."]),
    ]
    assert [p["trace"] for p in patching_problems(records, None)] == ["5_correct", "7_correct"]
    chosen = patching_problems(records, ["7_incorrect", "5_correct"])
    assert [(p["trace"], p["chunks"]) for p in chosen] == [
        ("7_incorrect", ["Wrong."]),
        ("5_correct", ["Nine."]),
    ]
    with pytest.raises(ValueError, match="9_correct"):
        patching_problems(records, ["9_correct"])


def test_instruction_replaces_only_the_problem_placeholder():
    text = build_prompt("What is {x}?", "raw", instruction="{problem} Put it in \\boxed{}.")
    assert text == "What is {x}? Put it in \\boxed{}."
    assert "\\boxed{}. Problem: 1+1? Solution:" in build_prompt("1+1?", "raw")
