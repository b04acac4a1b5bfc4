"""A tiny Qwen2-architecture model with one planted receiver head, built offline from a seed.

The tokenizer is a byte-level BPE trained with ``tokenizers`` on the demo texts (offsets kept,
BOS prepended by the post-processor). The model is randomly initialised with small weights,
so every head attends almost uniformly, except the planted head (layer ``planted_layer``,
head ``planted_head``), which is wired to attend to the first token of sentence-initial
marker words ("Wait", "Alternatively"):

- the marker tokens' embeddings carry a large value on a reserved residual dimension (the
  last one), which no other weight writes to (its rows of every ``o_proj`` and
  ``down_proj`` are zero) and every other token leaves at zero;
- the planted head's key projection reads that dimension into the lowest-frequency RoPE pair
  (nearly position-independent over the demo's lengths) of its KV head;
- the planted head's query is a constant (the ``q_proj`` bias) on that pair.

Its logit is ``marker_logit`` on marker keys and 0 elsewhere, so the head's sentence
attention has a strong vertical stripe at every marker sentence: a receiver head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from anchorflow.io import write_json

BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"
MARKER_WORDS = ("Wait", "Alternatively")
# The Qwen2 pre-tokenisation split (transformers' Qwen2Tokenizer re-applies it on load).
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (Qwen2 pre-tokenisation) trained on ``texts``; BOS is
    prepended to every encoding and offsets map tokens to characters."""
    if not texts:
        raise ValueError("cannot train the demo tokenizer on an empty list of texts")
    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    bos_id = backend.token_to_id(BOS)
    backend.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
            ),
        ]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS, eos_token=EOS, pad_token=PAD
    )


def marker_token_ids(tokenizer: PreTrainedTokenizerFast, words: tuple[str, ...]) -> list[int]:
    """Ids of the marker words that are whole tokens, alone or after a space (sentence starts).

    Raises when a word is a whole token in neither form (the texts use it too rarely)."""
    ids = []
    for word in words:
        whole = [
            encoded[0]
            for variant in (word, " " + word)
            if len(encoded := tokenizer(variant, add_special_tokens=False)["input_ids"]) == 1
        ]
        if not whole:
            raise ValueError(
                f"marker word {word!r} is not a single token of the demo tokenizer; "
                "use it more often in the texts or raise vocab_size"
            )
        ids += whole
    return sorted(set(ids))


def build_demo_model(
    out_dir: str | Path,
    texts: list[str],
    seed: int,
    layers: int = 4,
    heads: int = 4,
    kv_heads: int = 2,
    hidden: int = 64,
    intermediate: int = 128,
    vocab_size: int = 1024,
    rope_theta: float = 1.0e6,
    max_positions: int = 8192,
    planted_layer: int = 2,
    planted_head: int = 1,
    marker_words: tuple[str, ...] = MARKER_WORDS,
    marker_logit: float = 10.0,
) -> dict[str, Any]:
    """Build and save the demo model + tokenizer + ``planted_head.json`` in ``out_dir``.

    Deterministic from ``seed`` (byte-identical files on rebuild). Returns the planted-head
    record ``{"layer", "head", "marker_tokens", ...}``.
    """
    if not 1 <= planted_layer < layers:
        raise ValueError(f"planted_layer must be in [1, {layers}), got {planted_layer}")
    if not 0 <= planted_head < heads:
        raise ValueError(f"planted_head must be in [0, {heads}), got {planted_head}")
    if heads % kv_heads or hidden % heads:
        raise ValueError("heads must be a multiple of kv_heads and hidden a multiple of heads")
    tokenizer = train_tokenizer(texts, vocab_size)
    markers = marker_token_ids(tokenizer, tuple(marker_words))
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    _plant_receiver_head(model, markers, planted_layer, planted_head, marker_logit)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    planted = {
        "layer": planted_layer,
        "head": planted_head,
        "marker_words": list(marker_words),
        "marker_tokens": [tokenizer.convert_ids_to_tokens(i) for i in markers],
        "marker_logit": marker_logit,
        "seed": seed,
    }
    write_json(out / "planted_head.json", planted)
    return planted


@torch.no_grad()
def _plant_receiver_head(
    model: Qwen2ForCausalLM, markers: list[int], layer: int, head: int, marker_logit: float
) -> None:
    """Wire ``(layer, head)`` to attend to ``markers`` through the last residual dimension."""
    config = model.config
    head_dim = config.hidden_size // config.num_attention_heads
    kv_head = head // (config.num_attention_heads // config.num_key_value_heads)
    reserved = config.hidden_size - 1
    embedding = model.model.embed_tokens.weight
    embedding[:, reserved] = 0.0
    embedding[markers, reserved] = 1.0
    for block in model.model.layers:
        block.self_attn.o_proj.weight[reserved, :] = 0.0
        block.mlp.down_proj.weight[reserved, :] = 0.0
    attention = model.model.layers[layer].self_attn
    rows = [head_dim // 2 - 1, head_dim - 1]
    query = slice(head * head_dim, (head + 1) * head_dim)
    attention.q_proj.weight[query, :] = 0.0
    attention.q_proj.bias[query] = 0.0
    key_rows = [kv_head * head_dim + row for row in rows]
    attention.k_proj.weight[key_rows, :] = 0.0
    attention.k_proj.bias[key_rows] = 0.0
    # After RMSNorm a marker's reserved coordinate is ~sqrt(hidden); the logit is
    # q_bias * k_weight * sqrt(hidden) * head_dim**-0.5 on both rows of the RoPE pair.
    key_gain = 1.0
    query_bias = marker_logit * head_dim**0.5 / (2 * key_gain * config.hidden_size**0.5)
    for row, key_row in zip(rows, key_rows, strict=True):
        attention.k_proj.weight[key_row, reserved] = key_gain
        attention.q_proj.bias[head * head_dim + row] = query_bias
