"""Seeded, randomly initialised causal LMs and a word-level tokenizer: the model fixtures of the
tests and benchmarks (one builder instead of one per file).

Weights depend only on the family, the shape and the seed, so a test's numbers are reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

FAMILIES = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}


def model_shape(
    vocab: int, hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int, **extra: Any
) -> dict[str, Any]:
    """Config keyword arguments of a decoder shape (``extra``: positions, norms, RoPE, ...)."""
    return dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        **extra,
    )


# 2 layers x 4 query heads (GQA: 2 key-value heads), hidden 32.
TINY_SHAPE = model_shape(64, 32, 64, 2, 4, 2, max_position_embeddings=256)

# deepseek-ai/DeepSeek-R1-Distill-Qwen-14B config.json (benchmarks at the paper's scale).
QWEN14B_SHAPE = model_shape(
    152064,
    5120,
    13824,
    48,
    40,
    8,
    max_position_embeddings=131072,
    rms_norm_eps=1e-5,
    rope_parameters={"rope_type": "default", "rope_theta": 1.0e6},
)

SPECIAL_WORDS = ("<pad>", "<eos>", "<bos>")


def random_causal_lm(
    family: str = "qwen2",
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    **config: Any,
) -> PreTrainedModel:
    """A ``family`` model (``qwen2`` or ``llama``) of shape ``TINY_SHAPE`` updated by ``config``
    (any config keyword, ``attn_implementation`` included), with weights drawn from ``seed``,
    built directly in ``dtype`` on ``device``, in eval mode."""
    config_class, model_class = FAMILIES[family]
    settings = {**TINY_SHAPE, **config}
    attention = settings.pop("attn_implementation", None)
    torch.manual_seed(seed)
    with torch.device(device):
        model = model_class._from_config(
            config_class(**settings), dtype=dtype, attn_implementation=attention
        )
    return model.eval()


def word_level_tokenizer(words: Sequence[str]) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer over ``words``, whose first three are ``<pad>``,
    ``<eos>`` and ``<bos>`` (ids 0, 1, 2); unknown words map to ``words[3]``."""
    if tuple(words[:3]) != SPECIAL_WORDS:
        raise ValueError(f"the first three words must be {SPECIAL_WORDS}, got {tuple(words[:3])}")
    word_level = Tokenizer(
        models.WordLevel({word: i for i, word in enumerate(words)}, unk_token=words[3])
    )
    word_level.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=word_level, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>"
    )


def special_token_ids() -> dict[str, int]:
    """The config keywords that match :func:`word_level_tokenizer`'s special tokens."""
    return {"pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2}
