"""Batched generation throughput vs a one-prompt-at-a-time loop (as study 000 ran), same run.

A tiny randomly initialised Qwen2 model generates ``--prompts`` completions of
at most ``--new-tokens`` tokens each under a head
intervention, once with the batched per-row sampler and once prompt by prompt. Throughput
counts the tokens each row generated (up to its stop token). Prints a Markdown table and the
speed-up.

    python bench/bench_generation.py [--device cuda] [--prompts 32] [--batch-size 16]
"""

from __future__ import annotations

import argparse

import torch
from common import synchronized_seconds

from anchorflow.interventions.decode import GenerationItem, SamplingSettings, generate
from anchorflow.interventions.heads import HeadIntervention, stable_seed
from anchorflow.models.tiny import random_causal_lm, special_token_ids, word_level_tokenizer

VOCAB = ["<pad>", "<eos>", "<bos>"] + [f"w{i}" for i in range(509)]


# R1-Distill-Qwen-1.5B's shape (Qwen2.5-Math-1.5B), with the benchmark's 512-word vocabulary.
QWEN15B = dict(
    hidden_size=1536,
    intermediate_size=8960,
    num_hidden_layers=28,
    num_attention_heads=12,
    num_key_value_heads=2,
)


def tiny_model(
    hidden: int, layers: int, device: str, config: str = "tiny"
) -> tuple[torch.nn.Module, object]:
    shape = (
        QWEN15B
        if config == "qwen1.5b"
        else dict(
            hidden_size=hidden,
            intermediate_size=4 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=8,
            num_key_value_heads=2,
        )
    )
    model = random_causal_lm(
        "qwen2",
        device=device,
        dtype=torch.float16 if device == "cuda" else torch.float32,
        vocab_size=len(VOCAB),
        max_position_embeddings=2048,
        **shape,
        **special_token_ids(),
    )
    return model, word_level_tokenizer(VOCAB)


def timed(model, tokenizer, items, settings, interventions) -> tuple[float, int]:
    rows, seconds = synchronized_seconds(generate, model, tokenizer, items, settings, interventions)
    return seconds, sum(row["n_tokens"] for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--config", choices=["tiny", "qwen1.5b"], default="tiny")
    args = parser.parse_args()
    model, tokenizer = tiny_model(args.hidden, args.layers, args.device, args.config)
    items = [
        GenerationItem(
            str(i),
            " ".join(f"w{(7 * i + j) % 500 + 3}" for j in range(20 + i % 13)),
            stable_seed("bench", i),
        )
        for i in range(args.prompts)
    ]
    interventions = [HeadIntervention(1, 3, "scale", 5.0), HeadIntervention(2, 0, "zero")]
    batched = SamplingSettings(0.6, 0.95, args.new_tokens, args.batch_size)
    single = SamplingSettings(0.6, 0.95, args.new_tokens, 1)
    timed(model, tokenizer, items[:2], batched, interventions)  # warm-up
    loop_seconds, loop_tokens = timed(model, tokenizer, items, single, interventions)
    batch_seconds, batch_tokens = timed(model, tokenizer, items, batched, interventions)
    print(
        f"device {args.device}, {args.prompts} prompts x {args.new_tokens} new tokens, "
        f"hidden {args.hidden}, {args.layers} layers, 2 heads intervened"
    )
    print("| mode | seconds | tokens | tokens/s |")
    print("|---|---|---|---|")
    print(
        f"| one prompt at a time | {loop_seconds:.2f} | {loop_tokens} | "
        f"{loop_tokens / loop_seconds:.0f} |"
    )
    print(
        f"| batched (batch {args.batch_size}) | {batch_seconds:.2f} | {batch_tokens} | "
        f"{batch_tokens / batch_seconds:.0f} |"
    )
    print(f"speed-up: {loop_seconds / batch_seconds:.1f}x")
    print(
        f"SUMMARY|generation, {args.config}, {args.prompts} prompts x {args.new_tokens} tokens|"
        f"one at a time {loop_seconds:.2f} s|batched {batch_seconds:.2f} s|"
        f"{loop_seconds / batch_seconds:.1f}x faster"
    )


if __name__ == "__main__":
    main()
