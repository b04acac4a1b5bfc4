"""Sentence-position patching: invariants (no-op, KV cache, left padding) and sentence choice."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from anchorflow.interventions.decode import GenerationItem, SamplingSettings, generate
from anchorflow.interventions.patching import (
    ResidualPatch,
    apply_residual_patch,
    choose_patch_sentences,
    patching_conditions,
    sentence_token_mask,
)
from anchorflow.models.tiny import (
    FAMILIES,
    random_causal_lm,
    special_token_ids,
    word_level_tokenizer,
)

WORDS = ["<pad>", "<eos>", "<bos>"] + [f"w{i}" for i in range(45)]
GREEDY = SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=6, batch_size=4)
PROMPT = "w3 w4 w5 w6 w7 w8 w9 w10 w11 w12"
SPAN = (9, 17)  # "w6 w7 w8"


def tiny(family: str = "qwen2", initializer_range: float = 0.02):
    model = random_causal_lm(
        family,
        vocab_size=len(WORDS),
        max_position_embeddings=128,
        initializer_range=initializer_range,
        **special_token_ids(),
    )
    return model, word_level_tokenizer(WORDS)


def item(prompt: str = PROMPT, span=SPAN, seed: int = 0, key: str = "a") -> GenerationItem:
    return GenerationItem(key, prompt, seed, {"patch_span": list(span)} if span else {})


def _logits(model, tokenizer, patch, prompts_spans, seeds):
    encoded = tokenizer(
        [p for p, _ in prompts_spans],
        return_tensors="pt",
        padding=True,
        padding_side="left",
        return_offsets_mapping=True,
    )
    offsets = encoded.pop("offset_mapping")
    mask = sentence_token_mask(offsets, encoded["attention_mask"], [s for _, s in prompts_spans])
    with (
        apply_residual_patch(model, patch, mask, encoded["attention_mask"], seeds),
        torch.no_grad(),
    ):
        return model(**encoded).logits, encoded["attention_mask"]


def test_span_mask_marks_the_overlapping_tokens():
    tokenizer = word_level_tokenizer(WORDS)
    encoded = tokenizer(
        [PROMPT, "w1 w2"],
        return_offsets_mapping=True,
        padding=True,
        padding_side="left",
        return_tensors="pt",
    )
    mask = sentence_token_mask(encoded["offset_mapping"], encoded["attention_mask"], [SPAN, None])
    words = [tokenizer.convert_ids_to_tokens(int(i)) for i in encoded["input_ids"][0][mask[0]]]
    assert words == ["w6", "w7", "w8"]
    assert not mask[1].any()
    with pytest.raises(ValueError, match="covers no token"):
        sentence_token_mask(
            encoded["offset_mapping"], encoded["attention_mask"], [(200, 210), None]
        )


@pytest.mark.parametrize("mode", ["mean", "noise"])
def test_zero_strength_is_a_noop_and_full_strength_changes_the_logits(mode):
    model, tokenizer = tiny()
    with torch.no_grad():
        plain = model(**tokenizer([PROMPT], return_tensors="pt")).logits
    noop, _ = _logits(model, tokenizer, ResidualPatch(1, mode, 0.0), [(PROMPT, SPAN)], [5])
    torch.testing.assert_close(noop, plain, rtol=0, atol=0)
    patched, _ = _logits(model, tokenizer, ResidualPatch(1, mode, 1.0), [(PROMPT, SPAN)], [5])
    first_patched = 3  # BOS-free word tokenizer: w6 is token 3
    torch.testing.assert_close(patched[:, :first_patched], plain[:, :first_patched])
    assert (patched[:, first_patched:] - plain[:, first_patched:]).abs().max() > 1e-3


def _capture(layer, store: dict):
    """A pre-hook saving the layer's input hidden state (after any earlier pre-hook)."""

    def hook(module, args, kwargs):
        store["h"] = (args[0] if args else kwargs["hidden_states"]).clone()

    return layer.register_forward_pre_hook(hook, with_kwargs=True)


def test_mean_patch_writes_the_row_mean():
    model, tokenizer = tiny()
    layer = model.model.layers[1]
    encoded = tokenizer([PROMPT], return_tensors="pt", return_offsets_mapping=True)
    mask = sentence_token_mask(encoded.pop("offset_mapping"), encoded["attention_mask"], [SPAN])
    original, patched = {}, {}
    handle = _capture(layer, original)
    with torch.no_grad():
        model(**encoded)
    handle.remove()
    patch = ResidualPatch(1, "mean", 1.0)
    with apply_residual_patch(model, patch, mask, encoded["attention_mask"], [0]):
        handle = _capture(layer, patched)  # registered after the patch: sees its output
        with torch.no_grad():
            model(**encoded)
        handle.remove()
    expected = original["h"].clone()
    expected[0, mask[0]] = original["h"][0].mean(0)
    torch.testing.assert_close(patched["h"], expected)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("mode", ["mean", "noise"])
def test_alone_and_in_left_padded_batch_agree(family, mode):
    model, tokenizer = tiny(family)
    patch = ResidualPatch(1, mode, 1.0)
    items = [
        item(seed=3, key="a"),
        GenerationItem(
            "b",
            "w20 w21 w22 w23 w24 w25 w26 w27 w28 w29 w30 w31 w32 w33",
            4,
            {"patch_span": [4, 11]},
        ),
        GenerationItem("c", "w40 w41", 5, {}),
    ]
    batched = generate(model, tokenizer, items, GREEDY, patch=patch)
    alone = [generate(model, tokenizer, [one], GREEDY, patch=patch)[0] for one in items]
    assert [row["text"] for row in batched] == [row["text"] for row in alone]


@pytest.mark.parametrize("mode", ["mean", "noise"])
def test_cached_decoding_equals_uncached_forward_with_the_prompt_patched(mode):
    """The patch at prefill reaches every decode step through the KV cache: the logits of
    cached decoding equal those of the full sequence re-run with the prompt positions patched
    by a naive hook (and differ from the unpatched logits)."""
    model, tokenizer = tiny()
    patch = ResidualPatch(1, mode, 1.0)
    encoded = tokenizer([PROMPT], return_tensors="pt", return_offsets_mapping=True)
    mask = sentence_token_mask(encoded.pop("offset_mapping"), encoded["attention_mask"], [SPAN])
    prompt_length = encoded["input_ids"].shape[1]
    continuation = torch.tensor([[7, 19, 33, 12]])
    full = torch.cat([encoded["input_ids"], continuation], dim=1)
    seed = 9
    with torch.no_grad():
        with apply_residual_patch(model, patch, mask, encoded["attention_mask"], [seed]):
            prefill = model(**encoded, use_cache=True)
        cache, cached = prefill.past_key_values, [prefill.logits[0, -1]]
        for step in range(continuation.shape[1] - 1):
            out = model(
                input_ids=continuation[:, step : step + 1], past_key_values=cache, use_cache=True
            )
            cache = out.past_key_values
            cached.append(out.logits[0, -1])

    def reference_hook(module, args, kwargs):
        hidden = (args[0] if args else kwargs["hidden_states"]).clone()
        prompt = hidden[0, :prompt_length]
        if mode == "mean":
            target = prompt.mean(0)
        else:
            rms = prompt[mask[0]].pow(2).mean().sqrt()
            generator = torch.Generator().manual_seed(seed)
            target = torch.randn((int(mask.sum()), hidden.shape[-1]), generator=generator) * rms
        positions = torch.zeros(hidden.shape[1], dtype=torch.bool)
        positions[:prompt_length] = mask[0]
        hidden[0, positions] = target
        return (
            ((hidden, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": hidden})
        )

    handle = model.model.layers[1].register_forward_pre_hook(reference_hook, with_kwargs=True)
    try:
        with torch.no_grad():
            reference = model(input_ids=full, use_cache=False).logits[0, prompt_length - 1 : -1]
    finally:
        handle.remove()
    with torch.no_grad():
        unpatched = model(input_ids=full, use_cache=False).logits[0, prompt_length - 1 : -1]
    torch.testing.assert_close(torch.stack(cached), reference, rtol=1e-4, atol=1e-5)
    assert (reference - unpatched).abs().max() > 1e-3


@pytest.mark.parametrize("mode", ["mean", "noise"])
def test_left_padding_leaves_a_rows_patched_logits_unchanged(mode):
    model, tokenizer = tiny()
    patch = ResidualPatch(1, mode, 1.0)
    longer = ("w20 w21 w22 w23 w24 w25 w26 w27 w28 w29 w30 w31 w32 w33", (4, 11))
    alone, _ = _logits(model, tokenizer, patch, [(PROMPT, SPAN)], [7])
    batched, mask = _logits(model, tokenizer, patch, [longer, (PROMPT, SPAN)], [3, 7])
    real = mask[1].bool()
    torch.testing.assert_close(batched[1, real], alone[0], rtol=1e-4, atol=1e-5)
    unpatched, _ = _logits(model, tokenizer, ResidualPatch(1, mode, 0.0), [(PROMPT, SPAN)], [7])
    assert (alone - unpatched).abs().max() > 1e-3


def test_bad_patches_are_refused():
    with pytest.raises(ValueError, match="mode"):
        ResidualPatch(0, "zero", 1.0)
    with pytest.raises(ValueError, match="strength"):
        ResidualPatch(0, "mean", 1.5)
    model, tokenizer = tiny()
    mask = torch.ones(1, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="outside"):
        with apply_residual_patch(model, ResidualPatch(9, "mean", 1.0), mask, mask, [0]):
            pass


def test_sentence_choice_takes_the_top_anchor_and_matched_controls():
    scores = [0.1, 0.9, np.nan, 0.5, 0.05, 0.04, 0.03]
    lengths = [40, 40, 40, 40, 41, 200, 39]
    anchor, controls, n_matched = choose_patch_sentences(scores, lengths, 10, 2, 0.5, seed=1)
    assert anchor == 1
    assert n_matched == 3  # sentences 0, 4, 6: scored, outside the top 2, similar length
    assert set(controls) <= {0, 4, 6} and len(controls) == 10
    again = choose_patch_sentences(scores, lengths, 10, 2, 0.5, seed=1)
    assert again == (anchor, controls, n_matched)
    # No length-matched sentence: any scored sentence outside the top.
    _, fallback, matched = choose_patch_sentences([0.9, 0.1, 0.2], [10, 500, 900], 4, 1, 0.5, 0)
    assert matched == 0 and set(fallback) <= {1, 2}
    with pytest.raises(ValueError, match="no control"):
        choose_patch_sentences([0.9, np.nan], [10, 10], 2, 1, 0.5, 0)


def test_patching_conditions_cover_every_trace():
    section = {
        "seed": 0,
        "patching": {"n_random_draws": 3, "exclude_top": 1, "length_tolerance": 0.5},
    }
    problems = [
        {"trace": "1_correct", "chunks": ["a b c.", "d e f.", "g h i.", "j k l."]},
        {"trace": "2_correct", "chunks": ["a b c.", "d e f.", "g h i."]},
    ]
    scores = pd.DataFrame(
        [
            {"trace": trace, "chunk_idx": index, "receiver_score": value}
            for trace, values in [
                ("1_correct", [0.1, 0.2, 0.9, 0.3]),
                ("2_correct", [0.8, 0.1, 0.2]),
            ]
            for index, value in enumerate(values)
        ]
    )
    conditions, chosen = patching_conditions(section, scores, problems)
    assert list(conditions) == [
        "baseline",
        "anchor",
        "control_draw0",
        "control_draw1",
        "control_draw2",
    ]
    assert conditions["anchor"]["sentences"] == {"1_correct": 2, "2_correct": 0}
    for draw in range(3):
        picked = conditions[f"control_draw{draw}"]["sentences"]
        assert picked["1_correct"] != 2 and picked["2_correct"] != 0
    assert len(chosen) == 2 * 4
    with pytest.raises(ValueError, match="no receiver scores"):
        patching_conditions(section, scores[scores["trace"] == "1_correct"], problems)


@pytest.mark.parametrize("mode", ["mean", "noise"])
def test_rows_with_one_prompt_share_a_prefill_only_when_their_patch_is_the_same(mode):
    """Same prompt: unpatched, patched at one span, at another span, with another noise seed,
    and a second sample of the first patch (same patch seed, its own sampling seed). Batched,
    each row equals its run alone; the shared-patch pair reads the same prefill."""
    model, tokenizer = tiny(initializer_range=0.3)
    patch = ResidualPatch(1, mode, 1.0)
    settings = SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=8, batch_size=8)
    shared = {"patch_span": list(SPAN), "patch_seed": 11}
    items = [
        GenerationItem("plain", PROMPT, 1, {}),
        GenerationItem("patched", PROMPT, 2, shared),
        GenerationItem("other-span", PROMPT, 3, {"patch_span": [0, 5], "patch_seed": 11}),
        GenerationItem("other-noise", PROMPT, 4, {"patch_span": list(SPAN), "patch_seed": 12}),
        GenerationItem("patched-again", PROMPT, 5, shared),
    ]
    batched = generate(model, tokenizer, items, settings, patch=patch)
    alone = [generate(model, tokenizer, [one], settings, patch=patch)[0]["text"] for one in items]
    assert [row["text"] for row in batched] == alone
    assert alone[1] == alone[4]
    # the rows that must not share a prefill do differ alone
    if mode == "noise":
        assert alone[3] != alone[1]
    else:
        assert alone[0] != alone[1] != alone[2]
