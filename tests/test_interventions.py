"""Invariants of per-head interventions at the o_proj input (method reference §9, §12.5)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    PreTrainedTokenizerFast,
)

from anchorflow.interventions.conditions import (
    build_conditions,
    condition_groups,
    condition_names,
    draw_matched_heads,
)
from anchorflow.interventions.decode import GenerationItem, SamplingSettings, generate
from anchorflow.interventions.heads import (
    HeadIntervention,
    apply_interventions,
    compute_head_means,
    head_geometry,
    specs_from_json,
    specs_to_json,
)
from anchorflow.interventions.resolve import ranked_receivers
from anchorflow.interventions.scoring import score_text, summarise
from anchorflow.models.tiny import FAMILIES, random_causal_lm, special_token_ids


def tiny_model(family: str, vocab: int = 48, seed: int = 0) -> torch.nn.Module:
    """2 layers x 4 heads (2 KV heads), hidden 32, float32."""
    return random_causal_lm(
        family,
        seed=seed,
        vocab_size=vocab,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        **special_token_ids(),
    )


def o_proj_output(model, layer, input_ids, interventions=(), attention_mask=None):
    captured = {}
    handle = model.model.layers[layer].self_attn.o_proj.register_forward_hook(
        lambda module, args, output: captured.setdefault("out", output.detach().clone())
    )
    try:
        with apply_interventions(model, interventions), torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    finally:
        handle.remove()
    return captured["out"], logits


IDS = torch.tensor([[2, 5, 9, 17, 3, 30, 11, 8], [2, 40, 7, 7, 21, 6, 19, 4]])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_noop_interventions_reproduce_logits_exactly(family):
    model = tiny_model(family)
    with torch.no_grad():
        baseline = model(IDS).logits
    for interventions in (
        [],
        [HeadIntervention(0, 1, "scale", 1.0), HeadIntervention(1, 3, "scale", 1.0)],
    ):
        with apply_interventions(model, interventions), torch.no_grad():
            assert torch.equal(model(IDS).logits, baseline)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_zero_equals_zeroed_wo_columns(family):
    model = tiny_model(family)
    _, _, head_dim = head_geometry(model)
    layer, head = 1, 2
    with apply_interventions(model, [HeadIntervention(layer, head, "zero")]), torch.no_grad():
        hooked = model(IDS).logits
    edited = tiny_model(family)
    with torch.no_grad():
        edited.model.layers[layer].self_attn.o_proj.weight[
            :, head * head_dim : (head + 1) * head_dim
        ] = 0
        reference = edited(IDS).logits
    torch.testing.assert_close(hooked, reference, rtol=0, atol=1e-6)
    assert not torch.allclose(hooked, model(IDS).logits.detach(), atol=1e-4)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("scale", [0.0, 1.5, 10.0])
def test_scale_adds_multiple_of_head_contribution(family, scale):
    model = tiny_model(family)
    layer, head = 0, 3
    full, _ = o_proj_output(model, layer, IDS)
    zeroed, _ = o_proj_output(model, layer, IDS, [HeadIntervention(layer, head, "zero")])
    scaled, _ = o_proj_output(model, layer, IDS, [HeadIntervention(layer, head, "scale", scale)])
    contribution = full - zeroed
    assert contribution.abs().max() > 1e-4
    torch.testing.assert_close(scaled, full + (scale - 1) * contribution, rtol=1e-5, atol=1e-6)


def test_mean_op_writes_the_mean_vector():
    model = tiny_model("qwen2")
    n_layers, n_heads, head_dim = head_geometry(model)
    means = np.random.default_rng(0).normal(size=(n_layers, n_heads, head_dim)).astype(np.float32)
    captured = {}
    o_proj = model.model.layers[1].self_attn.o_proj
    handle = o_proj.register_forward_hook(
        lambda module, args, output: captured.setdefault("x", args[0].detach().clone())
    )
    try:
        with apply_interventions(model, [HeadIntervention(1, 2, "mean")], means), torch.no_grad():
            model(IDS)
    finally:
        handle.remove()
    per_head = captured["x"].unflatten(-1, (n_heads, head_dim))
    expected = torch.from_numpy(means[1, 2]).expand_as(per_head[:, :, 2])
    torch.testing.assert_close(per_head[:, :, 2], expected)
    with pytest.raises(ValueError, match="head means"):
        with apply_interventions(model, [HeadIntervention(1, 2, "mean")]):
            pass


def test_compute_head_means_matches_naive_average():
    model = tiny_model("llama")
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1]])
    means, n_tokens = compute_head_means(model, [{"input_ids": IDS, "attention_mask": mask}])
    assert n_tokens == 14
    captured = {}
    handle = model.model.layers[1].self_attn.o_proj.register_forward_hook(
        lambda module, args, output: captured.setdefault("x", args[0].detach())
    )
    with torch.no_grad():
        model(input_ids=IDS, attention_mask=mask)
    handle.remove()
    naive = captured["x"][mask.bool()].double().mean(0).reshape(4, -1).float().numpy()
    np.testing.assert_allclose(means[1], naive, rtol=1e-5, atol=1e-6)


def test_hooks_are_removed_even_on_error():
    model = tiny_model("qwen2")
    o_proj = model.model.layers[0].self_attn.o_proj
    with pytest.raises(RuntimeError, match="boom"):
        with apply_interventions(model, [HeadIntervention(0, 0, "zero")]):
            assert len(o_proj._forward_pre_hooks) == 1
            raise RuntimeError("boom")
    assert len(o_proj._forward_pre_hooks) == 0


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_hook_active_at_every_cached_decode_step(family):
    """Incremental decoding with the KV cache equals a full recompute under the hook."""
    model = tiny_model(family)
    interventions = [HeadIntervention(0, 1, "scale", 5.0), HeadIntervention(1, 0, "zero")]
    ids = IDS[:1]
    with apply_interventions(model, interventions), torch.no_grad():
        full = model(ids).logits
        prefill = model(ids[:, :5], use_cache=True)
        cache, steps = prefill.past_key_values, [prefill.logits]
        for position in range(5, ids.shape[1]):
            out = model(ids[:, position : position + 1], past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        unhooked = model(ids).logits
    assert (full - unhooked).abs().max() > 1e-3  # the hooks did act at those steps


def test_spec_roundtrip_and_validation():
    specs = [HeadIntervention(3, 1, "scale", 1.5), HeadIntervention(0, 2, "zero")]
    text = json.dumps(specs_to_json(specs))
    assert specs_from_json(json.loads(text)) == sorted(specs)
    with pytest.raises(ValueError):
        HeadIntervention(0, 0, "double", 2.0)
    with pytest.raises(ValueError):
        HeadIntervention(0, 0, "scale")
    with pytest.raises(ValueError):
        HeadIntervention(0, 0, "zero", 0.0)
    model = tiny_model("qwen2")
    with pytest.raises(ValueError, match="outside"):
        with apply_interventions(model, [HeadIntervention(5, 0, "zero")]):
            pass


def test_random_heads_are_matched_by_layer_and_exclude_receivers():
    receivers = [(1, 0), (1, 3), (0, 2)]
    drawn = draw_matched_heads(receivers, n_heads=4, excluded=receivers, seed=7)
    assert [layer for layer, _ in drawn] == [1, 1, 0]
    assert not set(drawn) & set(receivers)
    assert len(set(drawn)) == 3
    assert drawn == draw_matched_heads(receivers, 4, receivers, seed=7)
    draws = {tuple(draw_matched_heads(receivers, 8, receivers, seed=s)) for s in range(20)}
    assert len(draws) > 1
    with pytest.raises(ValueError, match="no head left"):
        draw_matched_heads([(0, 0), (0, 1)], n_heads=2, excluded=[(0, 0)], seed=0)


SECTION = {
    "seed": 3,
    "receiver_heads": {"exclude_from_random": None},
    "amplification": {
        "enabled": True,
        "head_set_sizes": [1, 2],
        "scales": [0, 1.0, 1.5],
        "n_random_draws": 2,
    },
    "ablation": {"enabled": True, "op": "zero", "max_heads": 2, "n_random_draws": 3},
    "counterfactual": {"enabled": True, "op": "mean", "n_heads": 1, "n_random_draws": 1},
    "patching": {"enabled": False},
}


def test_conditions_resolve_every_named_condition():
    names = condition_names(SECTION)
    resolved = build_conditions(SECTION, [(1, 0), (0, 2), (1, 1)], n_layers=2, n_heads=4)
    for experiment, conditions in names.items():
        assert list(resolved[experiment]) == conditions
    amp = resolved["amplification"]
    assert amp["top2_x1.5"]["interventions"] == specs_to_json(
        [HeadIntervention(1, 0, "scale", 1.5), HeadIntervention(0, 2, "scale", 1.5)]
    )
    assert amp["baseline"]["interventions"] == []
    ablation = resolved["ablation"]
    assert ablation["random1_zero_draw0"]["heads"] == ablation["random2_zero_draw0"]["heads"][:1]
    for draw in range(3):
        heads = ablation[f"random2_zero_draw{draw}"]["heads"]
        assert [layer for layer, _ in heads] == [1, 0]
        assert not {tuple(h) for h in heads} & {(1, 0), (0, 2)}
    assert resolved["counterfactual"]["top1_mean"]["interventions"][0]["op"] == "mean"
    for draw in range(2):
        at_scales = {
            tuple(map(tuple, amp[f"random2_x{s:g}_draw{draw}"]["heads"])) for s in (0, 1, 1.5)
        }
        assert len(at_scales) == 1  # one head set per draw, at every scale
        assert (
            amp[f"random1_x1.5_draw{draw}"]["heads"] == amp[f"random2_x1.5_draw{draw}"]["heads"][:1]
        )
        assert amp[f"random2_x1.5_draw{draw}"]["interventions"][0]["value"] == 1.5


def test_random_pool_excludes_the_whole_receiver_set():
    """Only the top receiver head is targeted, but no draw may contain any receiver head."""
    section = {
        **SECTION,
        "amplification": {**SECTION["amplification"], "head_set_sizes": [1], "n_random_draws": 30},
        "ablation": {**SECTION["ablation"], "max_heads": 1, "n_random_draws": 30},
        "counterfactual": {**SECTION["counterfactual"], "n_random_draws": 30},
    }
    receivers = [(1, 0), (0, 2), (1, 1), (1, 2)]
    resolved = build_conditions(section, receivers, n_layers=2, n_heads=5)
    drawn = {
        tuple(head)
        for conditions in resolved.values()
        for spec in conditions.values()
        if spec["kind"] == "random"
        for head in spec["heads"]
    }
    assert drawn == {(1, 3), (1, 4)}
    limited = {**section, "receiver_heads": {"exclude_from_random": 2}}
    resolved = build_conditions(limited, receivers, n_layers=2, n_heads=5)
    drawn = {
        tuple(h)
        for spec in resolved["ablation"].values()
        for h in spec["heads"]
        if spec["kind"] == "random"
    }
    assert drawn == {(1, 1), (1, 2), (1, 3), (1, 4)}


def test_condition_groups_partition_in_order():
    names = [f"c{i}" for i in range(7)]
    assert condition_groups(names, 3) == [["c0", "c1", "c2"], ["c3", "c4", "c5"], ["c6"]]
    assert condition_groups(names, 64) == [names]
    with pytest.raises(ValueError):
        condition_groups(names, 0)


# A "successor" model: the residual stream is (almost) the token embedding and lm_head maps the
# embedding of token t to token succ(t), so greedy decoding walks a fixed chain of words.
WORDS = [
    "<pad>",
    "<eos>",
    "<bos>",
    "Problem:",
    "a",
    "b",
    "c",
    "d",
    "x",
    "\\boxed{",
    "}",
    "</think>",
    "1",
    "2",
    "3",
    "4",
    "so",
]
CHAIN = {
    "a": "so",
    "b": "so",
    "c": "so",
    "d": "so",
    "so": "\\boxed{",
    "\\boxed{": "1",
    "1": "}",
    "2": "}",
    "}": "</think>",
    "</think>": "<eos>",
}


def successor_model(family: str) -> tuple[torch.nn.Module, object]:
    vocab = {word: index for index, word in enumerate(WORDS)}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_word_tokenizer(vocab),
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
    )
    model = tiny_model(family, vocab=32)
    hidden = model.config.hidden_size
    embeddings = (
        torch.linalg.qr(torch.randn(hidden, hidden, generator=torch.Generator().manual_seed(1)))[0][
            :32
        ]
        * 8
    )
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(embeddings)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.mul_(1e-3)
            layer.mlp.down_proj.weight.mul_(1e-3)
        model.lm_head.weight.zero_()
        for word, nxt in CHAIN.items():
            model.lm_head.weight[vocab[nxt]] += embeddings[vocab[word]]
    return model, tokenizer


def _word_tokenizer(vocab: dict[str, int]) -> Tokenizer:
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="x"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tokenizer


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_noop_intervention_reproduces_baseline_accuracy_end_to_end(family):
    model, tokenizer = successor_model(family)
    prompts = {
        "p1": "Problem: a b so",
        "p2": "Problem: c",
        "p3": "Problem: d d d a",
        "p4": "Problem: b",
    }
    gold = {"p1": "1", "p2": "1", "p3": "2", "p4": "4"}
    items = [
        GenerationItem(key, prompt, seed) for seed, (key, prompt) in enumerate(prompts.items())
    ]
    settings = SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=8, batch_size=3)

    def accuracy(interventions):
        rows = generate(model, tokenizer, items, settings, interventions)
        scored = [
            {
                "condition": "c",
                **score_text(row["text"], gold[row["item_id"]]),
                "n_tokens": row["n_tokens"],
            }
            for row in rows
        ]
        return [row["text"] for row in rows], summarise(scored, ["condition"])

    texts, baseline = accuracy([])
    assert "\\boxed{ 1 } </think>" in texts[0]
    assert 0 < baseline["accuracy"].item() < 1
    noop_texts, noop = accuracy(
        [HeadIntervention(0, 1, "scale", 1.0), HeadIntervention(1, 2, "scale", 1.0)]
    )
    assert noop_texts == texts
    assert noop["accuracy"].item() == baseline["accuracy"].item()
    assert noop["finished_rate"].item() == baseline["finished_rate"].item() == 1.0


def test_ranked_receivers_follow_rank_and_skip_excluded_layers() -> None:
    table = pd.DataFrame({"layer": [0, 3, 1, 2], "head": [5, 1, 2, 0], "rank": [1, 4, 2, 3]})
    section = {"receiver_heads": {"heads": [], "exclude_layers": [0]}}
    assert ranked_receivers(section, table) == ([(1, 2), (2, 0), (3, 1)], "receiver_heads.tsv")
    section = {"receiver_heads": {"heads": [[4, 4], [0, 1]], "exclude_layers": [0]}}
    assert ranked_receivers(section, table) == ([(4, 4), (0, 1)], "config")
