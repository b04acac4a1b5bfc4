"""The attention-level interventions (attention_ops): each op against a hand computation of its
definition, and the invariants of the issue (identity ops bit-identical, s = 0 equal to the
suppression stage, cached decoding equal to an uncached re-run, left padding inert, heads not
targeted untouched)."""

from __future__ import annotations

import pytest
import torch

from anchorflow.interventions.attention_ops import (
    AttentionOp,
    attention_editing,
    bind_edit,
)
from anchorflow.interventions.decode import GenerationItem, SamplingSettings, generate
from anchorflow.models.tiny import random_causal_lm, special_token_ids, word_level_tokenizer
from anchorflow.suppression.attention import head_selection, suppression_attention

WORDS = ["<pad>", "<eos>", "<bos>"] + [f"w{i}" for i in range(45)]
N_LAYERS, N_HEADS, GROUPS = 2, 4, 2
SPAN, TARGET = (3, 7), (8, 11)  # token spans of a 14-token input
OPS = {
    "scale_x0": AttentionOp("scale_to_span", heads=((0, 1), (1, 2)), scale=0.0),
    "scale_x0.5": AttentionOp("scale_to_span", heads=((0, 3),), scale=0.5),
    "scale_x5": AttentionOp("scale_to_span", layers=(0,), scale=5.0),
    "uniform": AttentionOp("pattern", heads=((0, 0), (0, 3)), pattern="uniform"),
    "previous": AttentionOp("pattern", layers=(0,), pattern="previous"),
    "hub": AttentionOp("pattern", heads=((0, 2),), pattern="hub", fraction=0.7),
    "reroute": AttentionOp("reroute", heads=((0, 1), (0, 2))),
}


def sharp_model(attention: str = "sdpa") -> torch.nn.Module:
    """A 2-layer GQA model (4 query / 2 key-value heads) with peaked attention."""
    return random_causal_lm(
        "qwen2",
        vocab_size=len(WORDS),
        max_position_embeddings=128,
        initializer_range=0.3,
        attn_implementation=attention,
        **special_token_ids(),
    )


def token_ids(n_tokens: int = 14, seed: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, len(WORDS), (1, n_tokens), generator=generator)


def key_mask(span: tuple[int, int], n_tokens: int = 14) -> torch.Tensor:
    mask = torch.zeros(1, n_tokens, dtype=torch.bool)
    mask[0, span[0] : span[1]] = True
    return mask


def edit_of(op: AttentionOp, n_tokens: int = 14):
    return bind_edit(op, N_LAYERS, N_HEADS, key_mask(SPAN, n_tokens), key_mask(TARGET, n_tokens))


def edited_logits(model, op: AttentionOp, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), attention_editing(model):
        return model(ids, attention_edit=edit_of(op, ids.shape[1])).logits


def hand_weights(weights: torch.Tensor, op: AttentionOp) -> torch.Tensor:
    """The definition of each op on one head's stock weights ``[T, T]`` (float64)."""
    n = weights.shape[-1]
    causal = torch.tril(torch.ones(n, n, dtype=torch.float64))
    span, target = key_mask(SPAN, n)[0].double(), key_mask(TARGET, n)[0].double()
    if op.op == "scale_to_span":
        scaled = weights * (1 + (op.scale - 1) * span)
        return scaled / scaled.sum(-1, keepdim=True)
    if op.pattern == "uniform":
        return causal / causal.sum(-1, keepdim=True)
    if op.pattern == "previous":
        previous = torch.zeros(n, n, dtype=torch.float64)
        previous[0, 0] = 1
        previous[torch.arange(1, n), torch.arange(n - 1)] = 1
        return previous
    on_span = (weights * span).sum(-1, keepdim=True)
    if op.pattern == "hub":
        hub = (1 - op.fraction) * weights + op.fraction * weights * span / on_span
        return torch.where(on_span > 0, hub, weights)
    onto = target * (1 - span)
    on_target = (weights * onto).sum(-1, keepdim=True)
    moved = weights * (1 - span) + weights * onto * on_span / on_target
    return torch.where((on_target > 0) & (on_span > 0), moved, weights)


def layer0_readouts(model, ids, op: AttentionOp | None):
    """Layer 0's stock weights ``[heads, T, T]``, values ``[kv_heads, T, d]`` and per-head
    o_proj inputs ``[heads, T, d]`` (under ``op`` when given)."""
    attention = model.model.layers[0].self_attn
    seen = {}
    hooks = [
        attention.v_proj.register_forward_hook(lambda m, a, out: seen.__setitem__("v", out)),
        attention.o_proj.register_forward_pre_hook(lambda m, a: seen.__setitem__("o", a[0])),
    ]
    try:
        with torch.no_grad():
            if op is None:
                weights = model(ids, output_attentions=True).attentions[0][0]
            else:
                weights = None
                edited_logits(model, op, ids)
    finally:
        for hook in hooks:
            hook.remove()
    n = ids.shape[1]
    values = seen["v"][0].view(n, -1, 8).transpose(0, 1)
    return weights, values, seen["o"][0].view(n, N_HEADS, 8).transpose(0, 1)


@pytest.mark.parametrize("name", sorted(OPS))
def test_each_op_equals_its_definition_and_leaves_other_heads_untouched(name):
    op = OPS[name]
    model = sharp_model("eager")
    ids = token_ids()
    weights, values, stock = layer0_readouts(model, ids, None)
    _, _, edited = layer0_readouts(model, ids, op)
    targeted = op.selection(N_LAYERS, N_HEADS).get(0, [])
    assert targeted
    for head in range(N_HEADS):
        if head not in targeted:
            assert torch.equal(edited[head], stock[head])
            continue
        expected = hand_weights(weights[head].double(), op) @ values[head // GROUPS].double()
        torch.testing.assert_close(edited[head].double(), expected, atol=2e-5, rtol=0)
        assert not torch.allclose(edited[head], stock[head], atol=1e-4)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize(
    "op",
    [
        AttentionOp("scale_to_span", layers=(0, 1), scale=1.0),
        AttentionOp("pattern", heads=((0, 1), (1, 3)), pattern="hub", fraction=0.0),
        AttentionOp("reroute", heads=((0, 1), (1, 3))),
    ],
    ids=["scale_x1", "hub_f0", "reroute_A_to_A"],
)
def test_identity_ops_are_bit_identical(attention, op):
    model = sharp_model(attention)
    ids = token_ids()
    with torch.no_grad():
        stock = model(ids).logits
    with torch.no_grad(), attention_editing(model):
        span = key_mask(SPAN)
        same = bind_edit(op, N_LAYERS, N_HEADS, span, span)
        assert torch.equal(model(ids, attention_edit=same).logits, stock)
    assert model.config._attn_implementation == attention


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("heads", [None, [(0, 1), (1, 2)]], ids=["all_heads", "two_heads"])
def test_suppressing_a_span_equals_the_suppression_stage(attention, heads):
    model = sharp_model(attention)
    ids = token_ids()
    keys = key_mask(SPAN)
    chosen = dict(layers=(0, 1)) if heads is None else dict(heads=tuple(heads))
    op = AttentionOp("scale_to_span", scale=0.0, **chosen)
    selection = None
    if heads is not None:
        selection = head_selection(heads, num_layers=N_LAYERS, num_heads=N_HEADS, device="cpu")
    with torch.no_grad(), suppression_attention(model):
        stage = model(ids, suppressed_keys=keys, suppressed_heads=selection).logits
    edited = edited_logits(model, op, ids)
    torch.testing.assert_close(edited, stage, atol=1e-5, rtol=0)
    with torch.no_grad():
        assert (model(ids).logits[0, SPAN[1] :] - stage[0, SPAN[1] :]).abs().max() > 1e-2


@pytest.mark.parametrize("name", sorted(OPS))
def test_cached_decode_steps_equal_an_uncached_forward(name):
    """Prefill the 11 tokens that hold both spans, then 3 cached single-token steps: every
    step's logits equal the uncached forward of the whole 14 tokens under the same op."""
    from transformers import DynamicCache

    op, model, ids = OPS[name], sharp_model(), token_ids()
    whole = edited_logits(model, op, ids)[0]
    edit = edit_of(op, 11)
    cache = DynamicCache(config=model.config)
    steps = []
    with torch.no_grad(), attention_editing(model):
        steps.append(model(ids[:, :11], past_key_values=cache, attention_edit=edit).logits[0, -1])
        for position in range(11, 14):
            step = model(
                ids[:, position : position + 1], past_key_values=cache, attention_edit=edit
            )
            steps.append(step.logits[0, -1])
    torch.testing.assert_close(torch.stack(steps), whole[10:], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(OPS))
def test_left_padding_leaves_a_row_unchanged(name):
    op, model, ids = OPS[name], sharp_model(), token_ids()
    alone = edited_logits(model, op, ids)[0]
    pad = 5
    padded = torch.cat([torch.zeros(1, pad, dtype=torch.long), ids], dim=1)
    mask = torch.cat([torch.zeros(1, pad, dtype=torch.long), torch.ones_like(ids)], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    shift = torch.zeros(1, pad, dtype=torch.bool)
    span, target = (torch.cat([shift, key_mask(s)], dim=1) for s in (SPAN, TARGET))
    with torch.no_grad(), attention_editing(model):
        edit = bind_edit(op, N_LAYERS, N_HEADS, span, target)
        out = model(padded, attention_mask=mask, position_ids=positions, attention_edit=edit)
    torch.testing.assert_close(out.logits[0, pad:], alone, atol=1e-4, rtol=1e-4)


PROMPTS = [
    "w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13",
    "w20 w21 w22 w23 w24 w25",
    "w30 w31 w32 w33 w34 w35 w36 w37",
]


def edit_items() -> list[GenerationItem]:
    """Items whose span is each prompt's 2nd-4th words and whose target is the 5th-6th."""
    items = []
    for index, prompt in enumerate(PROMPTS):
        starts = [i for i, c in enumerate(prompt) if i == 0 or prompt[i - 1] == " "]
        words = prompt.split()
        ends = [start + len(word) for start, word in zip(starts, words, strict=True)]
        meta = {"attention_span": [starts[1], ends[3]], "attention_target": [starts[4], ends[5]]}
        items.append(GenerationItem(str(index), prompt, index, meta))
    return items


def uncached_greedy(model, tokenizer, item, op, n_new: int) -> list[str]:
    """Greedy decoding by re-running the whole sequence under ``op`` at every step."""
    encoded = tokenizer(item.prompt, return_tensors="pt", return_offsets_mapping=True)
    offsets = encoded.pop("offset_mapping")[0]
    n = encoded["input_ids"].shape[1]
    masks = []
    for key in ("attention_span", "attention_target"):
        first, end = item.meta[key]
        masks.append(((offsets[:, 0] >= first) & (offsets[:, 1] <= end))[None])
    ids = encoded["input_ids"]
    with torch.no_grad(), attention_editing(model):
        for _ in range(n_new):
            span, target = (torch.cat([m, m.new_zeros(1, ids.shape[1] - n)], 1) for m in masks)
            edit = bind_edit(op, N_LAYERS, N_HEADS, span, target)
            following = model(ids, attention_edit=edit).logits[0, -1].argmax()
            ids = torch.cat([ids, following.view(1, 1)], dim=1)
    return tokenizer.convert_ids_to_tokens(ids[0, n:].tolist())


@pytest.mark.parametrize("name", ["scale_x0", "uniform", "hub", "reroute", "previous"])
def test_generation_under_an_op_equals_uncached_greedy_alone_and_in_a_padded_batch(name):
    op, model = OPS[name], sharp_model()
    tokenizer = word_level_tokenizer(WORDS)
    items = edit_items()
    greedy = SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=8, batch_size=3)
    batched = generate(model, tokenizer, items, greedy, attention=op)
    alone = generate(model, tokenizer, items, SamplingSettings(0.0, 1.0, 8, 1), attention=op)
    plain = generate(model, tokenizer, items, greedy)
    assert [r["text"] for r in batched] == [r["text"] for r in alone]
    assert [r["text"] for r in batched] != [r["text"] for r in plain]
    for item, row in zip(items, batched, strict=True):
        expected = uncached_greedy(model, tokenizer, item, op, row["n_tokens"])
        assert row["text"].split() == expected[: row["n_tokens"] - row["stopped"]]
        assert not row["stopped"] or expected[-1] == "<eos>"
    assert model.config._attn_implementation == "sdpa"


def test_generation_without_spans_for_a_pattern_op():
    """uniform and previous need no span: items without one generate, and a span op without
    one is a clear error."""
    model, tokenizer = sharp_model(), word_level_tokenizer(WORDS)
    items = [GenerationItem("0", PROMPTS[0], 0)]
    greedy = SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=4, batch_size=1)
    assert generate(model, tokenizer, items, greedy, attention=OPS["uniform"])[0]["n_tokens"] > 0
    with pytest.raises(ValueError, match="needs a span per row"):
        generate(model, tokenizer, items, greedy, attention=OPS["hub"])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (dict(op="scale", heads=((0, 1),), scale=1.0), "unknown attention op"),
        (dict(op="scale_to_span", scale=1.0), "names no heads and no layers"),
        (dict(op="scale_to_span", heads=((0, -1),), scale=1.0), "negative layer or head"),
        (dict(op="scale_to_span", heads=((0, 1),)), "a scale is given with, and only with"),
        (dict(op="scale_to_span", heads=((0, 1),), scale=-1.0), "finite scale >= 0"),
        (dict(op="scale_to_span", heads=((0, 1),), scale=float("inf")), "finite scale >= 0"),
        (dict(op="pattern", heads=((0, 1),), pattern="diagonal"), "unknown pattern"),
        (dict(op="pattern", heads=((0, 1),), pattern="hub"), "a fraction is given with"),
        (dict(op="pattern", heads=((0, 1),), pattern="hub", fraction=1.5), r"in \[0, 1\]"),
        (dict(op="reroute", heads=((0, 1),), pattern="uniform"), "only with, op 'pattern'"),
    ],
)
def test_invalid_ops_are_clear_errors(arguments, message):
    with pytest.raises(ValueError, match=message):
        AttentionOp(**arguments)


def test_selection_round_trip_and_binding_errors():
    op = AttentionOp("pattern", heads=((1, 2), (0, 1), (1, 2)), layers=(0,), pattern="previous")
    assert op.selection(2, 4) == {0: [0, 1, 2, 3], 1: [2]}
    assert AttentionOp.from_dict(op.to_dict()) == op
    with pytest.raises(ValueError, match="outside a model of 4 heads"):
        AttentionOp("reroute", heads=((0, 4),)).selection(2, 4)
    with pytest.raises(ValueError, match=r"layers \[2\] are outside a model of 2 layers"):
        AttentionOp("reroute", layers=(2,)).selection(2, 4)
    with pytest.raises(ValueError, match="unknown attention-op keys"):
        AttentionOp.from_dict({**op.to_dict(), "scales": 2})
    with pytest.raises(ValueError, match="a reroute needs a target span"):
        bind_edit(OPS["reroute"], 2, 4, key_mask(SPAN), None)
    model = sharp_model("eager")
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="an attention edit wraps eager or sdpa attention"):
        with attention_editing(model):
            pass
