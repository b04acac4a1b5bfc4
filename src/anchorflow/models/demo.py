"""A tiny Qwen2-architecture model with one planted receiver head, built offline from a seed.

The tokenizer is a byte-level BPE trained with ``tokenizers`` on the demo texts (offsets kept,
BOS prepended by the post-processor). The model is randomly initialised with small weights,
so every head attends almost uniformly, except the planted head (layer ``planted_layer``,
head ``planted_head``). Reserved residual dimensions, which no other weight writes to (their
rows of every ``o_proj`` and ``down_proj`` are zero), carry three circuits:

- **Receiver.** Marker words ("Wait", "Alternatively") and the ten number words ("zero" ..
  "nine") set reserved flags; the planted head's key reads them into the lowest-frequency RoPE
  pair (nearly position-independent) and its query is a constant on that pair, so its logit is
  ``marker_logit`` on markers, ``answer_logit`` on number words and 0 elsewhere: vertical
  stripes at those sentences, a receiver head.
- **Copy.** A number word ``w`` sets digit dimension ``D[w]``; the planted head's value reads
  the digit dimensions and its ``o_proj`` columns write them back, scaled by ``copy_gain``. The
  untied ``lm_head`` reads ``D[d]`` into the logit of the digit token ``d``. So the digit of
  the number word the head attends to is written at every later position.
- **Answer format.** A chain of next-token states: after a sentence-final ``.`` the model writes
  `` </think> \\boxed{``, then a digit (the copied one, else the default digit 0), then ``}``,
  then EOS.

A trace whose anchor sentence states the result as a number word ("... seven marbles remain.")
is therefore answered through the planted head alone: zeroing it leaves the default ``0``,
amplifying it lets the copied digit outvote the format chain (a repeated digit, no box).
"""

from __future__ import annotations

from dataclasses import dataclass
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
from anchorflow.models.tiny import model_shape

BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"
MARKER_WORDS = ("Wait", "Alternatively")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ANSWER_CUE = " </think> \\boxed{"
SENTENCE_END = "."
DEFAULT_WEIGHT = 0.25  # the default digit 0 after the cue, relative to the format gain
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


def demo_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """The demo tokenizer: trained on ``texts`` plus one line of the number words, so that
    each number word is a token."""
    return train_tokenizer([*texts, " ".join(NUMBER_WORDS * 8)], vocab_size)


def single_token_id(tokenizer: PreTrainedTokenizerFast, text: str, what: str) -> int:
    """The id of ``text`` when the tokenizer makes it one token; raises naming ``what``."""
    encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(encoded) != 1:
        raise ValueError(f"{what} {text!r} is not a single token of the demo tokenizer")
    return encoded[0]


def number_word_ids(tokenizer: PreTrainedTokenizerFast, words: tuple[str, ...]) -> list[int]:
    """The token id of each number word after a space (``" seven"``), in digit order.

    Raises when one is not a whole token."""
    return [single_token_id(tokenizer, " " + word, "number word") for word in words]


def answer_chain(tokenizer: PreTrainedTokenizerFast) -> tuple[list[int], list[int], int, int]:
    """Token ids of the answer format: ``(cue, digits, close, eos)``; the cue follows a
    sentence-final ``.`` and ``digits[d]`` is the token of digit ``d``."""
    cue = tokenizer(SENTENCE_END + ANSWER_CUE, add_special_tokens=False)["input_ids"]
    if cue[:1] != [single_token_id(tokenizer, SENTENCE_END, "the sentence end")]:
        raise ValueError(f"{SENTENCE_END!r} must begin the answer cue")
    digits = [single_token_id(tokenizer, str(digit), "digit") for digit in range(10)]
    close = single_token_id(tokenizer, "}", "the closing brace")
    return cue, digits, close, tokenizer.eos_token_id


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
    answer_logit: float = 16.0,
    copy_gain: float = 0.4,
    format_gain: float = 3.0,
) -> dict[str, Any]:
    """Build and save the demo model + tokenizer + ``planted_head.json`` in ``out_dir``.

    The tokenizer is trained on ``texts`` plus one line of the number words (so each is a
    token). Deterministic from ``seed`` (byte-identical files on rebuild). Returns the
    planted-head record ``{"layer", "head", "marker_tokens", ...}``.
    """
    if not 1 <= planted_layer < layers:
        raise ValueError(f"planted_layer must be in [1, {layers}), got {planted_layer}")
    if not 0 <= planted_head < heads:
        raise ValueError(f"planted_head must be in [0, {heads}), got {planted_head}")
    if heads % kv_heads or hidden % heads:
        raise ValueError("heads must be a multiple of kv_heads and hidden a multiple of heads")
    if hidden // heads < len(NUMBER_WORDS) + 2:
        raise ValueError(
            f"head dimension {hidden // heads} is too small for the copy circuit "
            f"(needs {len(NUMBER_WORDS) + 2}); raise hidden or lower heads"
        )
    if not texts:
        raise ValueError("cannot train the demo tokenizer on an empty list of texts")
    tokenizer = demo_tokenizer(texts, vocab_size)
    markers = marker_token_ids(tokenizer, tuple(marker_words))
    numbers = number_word_ids(tokenizer, NUMBER_WORDS)
    cue, digits, close, eos = answer_chain(tokenizer)
    shape = model_shape(len(tokenizer), hidden, intermediate, layers, heads, kv_heads)
    config = Qwen2Config(
        **shape,
        max_position_embeddings=max_positions,
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    circuit = PlantedCircuit(planted_layer, planted_head, markers, numbers, cue, digits, close, eos)
    _plant(model, circuit, marker_logit, answer_logit, copy_gain, format_gain)
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
        "number_tokens": [tokenizer.convert_ids_to_tokens(i) for i in numbers],
        "answer_logit": answer_logit,
        "answer_cue": tokenizer.convert_ids_to_tokens(cue),
        "copy_gain": copy_gain,
        "format_gain": format_gain,
        "seed": seed,
    }
    write_json(out / "planted_head.json", planted)
    return planted


@dataclass(frozen=True)
class PlantedCircuit:
    """Where the planted head sits and the token ids its three circuits use."""

    layer: int
    head: int
    markers: list[int]
    numbers: list[int]
    cue: list[int]
    digits: list[int]
    close: int
    eos: int


@torch.no_grad()
def _plant(
    model: Qwen2ForCausalLM,
    circuit: PlantedCircuit,
    marker_logit: float,
    answer_logit: float,
    copy_gain: float,
    format_gain: float,
) -> None:
    """Wire the receiver, copy and answer-format circuits on the reserved residual dimensions.

    Layout of the last dimensions: ``[..., states, digits (10), marker]``; a state dimension
    per format transition (``.`` -> cue[1], ..., the last cue token -> the default digit at
    ``DEFAULT_WEIGHT`` of the gain, any digit -> ``}``, ``}`` -> EOS).
    """
    config = model.config
    hidden, n_heads = config.hidden_size, config.num_attention_heads
    head_dim = hidden // n_heads
    kv_head = circuit.head // (n_heads // config.num_key_value_heads)
    n_digits = len(circuit.digits)
    marker_dim = hidden - 1
    digit_dims = list(range(hidden - 1 - n_digits, hidden - 1))
    transitions = [([circuit.cue[i]], circuit.cue[i + 1]) for i in range(len(circuit.cue) - 1)]
    transitions += [([circuit.cue[-1]], circuit.digits[0])]
    transitions += [(circuit.digits, circuit.close), ([circuit.close], circuit.eos)]
    first_state = digit_dims[0] - len(transitions)
    if first_state < hidden // 2:
        raise ValueError(f"hidden size {hidden} leaves too few free dimensions for the circuits")
    reserved = list(range(first_state, hidden))

    embedding = model.get_input_embeddings().weight
    unembedding = model.lm_head.weight
    embedding[:, reserved] = 0.0
    unembedding[:, reserved] = 0.0
    for block in model.get_decoder().layers:
        block.self_attn.o_proj.weight[reserved, :] = 0.0
        block.mlp.down_proj.weight[reserved, :] = 0.0
    embedding[circuit.markers, marker_dim] = 1.0
    for digit, token in enumerate(circuit.numbers):
        embedding[token, digit_dims[digit]] = 1.0
    for digit, token in enumerate(circuit.digits):
        unembedding[token, digit_dims[digit]] = format_gain
    for state, (sources, target) in enumerate(transitions):
        embedding[sources, first_state + state] = 1.0
        default = target == circuit.digits[0] and sources == [circuit.cue[-1]]
        unembedding[target, first_state + state] = format_gain * (DEFAULT_WEIGHT if default else 1)

    attention = model.get_decoder().layers[circuit.layer].self_attn
    # Receiver: the lowest-frequency RoPE pair of the head's KV head reads the flags. After
    # RMSNorm a flagged coordinate is ~sqrt(hidden); the logit on a marker is
    # q_bias * sqrt(hidden) * head_dim**-0.5 on both rows of the pair.
    rows = [head_dim // 2 - 1, head_dim - 1]
    query = slice(circuit.head * head_dim, (circuit.head + 1) * head_dim)
    attention.q_proj.weight[query, :] = 0.0
    attention.q_proj.bias[query] = 0.0
    query_bias = marker_logit * head_dim**0.5 / (2 * hidden**0.5)
    for row in rows:
        key_row = kv_head * head_dim + row
        attention.k_proj.weight[key_row, :] = 0.0
        attention.k_proj.bias[key_row] = 0.0
        attention.k_proj.weight[key_row, marker_dim] = 1.0
        attention.k_proj.weight[key_row, digit_dims] = answer_logit / marker_logit
        attention.q_proj.bias[circuit.head * head_dim + row] = query_bias
    # Copy: value slot d reads digit dimension d; the head's o_proj columns write it back.
    for digit, dim in enumerate(digit_dims):
        value_row = kv_head * head_dim + digit
        attention.v_proj.weight[value_row, :] = 0.0
        attention.v_proj.bias[value_row] = 0.0
        attention.v_proj.weight[value_row, dim] = 1.0
        attention.o_proj.weight[dim, circuit.head * head_dim + digit] = copy_gain / hidden**0.5
