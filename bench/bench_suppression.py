"""Benchmark: fast suppression matrix vs the reference loop (n + 1 full passes, logits to CPU,
KL per position in Python, fully materialised eager attention), same model, same trace, same
run; the matrices must agree (``--atol``, 1e-4). ``--attention sdpa`` runs the fast path with SDPA:
its float32 rounding differs from eager's, which moves weakly affected log-KL entries by more than
1e-4, so compare it with a looser ``--atol``.

    python bench/bench_suppression.py   # tiny Qwen2, ~1k tokens, 40 sentences, CPU
    python bench/bench_suppression.py --device cuda --config qwen14b --tokens 4096 --sentences 120

``--config qwen14b`` builds a randomly initialised model with DeepSeek-R1-Distill-Qwen-14B's
shape (48 layers, 40 heads, 8 KV heads, hidden 5120, vocabulary 152,064) in float16; the
reference loop is then timed on ``--naive-columns`` suppressed sentences only and extrapolated.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import synchronized_seconds

from anchorflow.models.tiny import QWEN14B_SHAPE, random_causal_lm
from anchorflow.reference import reference_suppression_matrix
from anchorflow.suppression.divergence import KLSettings
from anchorflow.suppression.matrix import suppression_matrix

SHAPES = {
    "tiny": dict(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32768,
    ),
    "qwen14b": QWEN14B_SHAPE,
}


def build(config: str, device: str) -> torch.nn.Module:
    """Tiny: float32, logits scaled x30 (peaked distributions, as a trained model's); 14B shape:
    float16."""
    dtype = torch.float32 if config == "tiny" else torch.float16
    model = random_causal_lm(
        "qwen2",
        device=device,
        dtype=dtype,
        tie_word_embeddings=False,
        attn_implementation="eager",
        **SHAPES[config],
    )
    with torch.no_grad():
        model.lm_head.weight.mul_(30.0 if config == "tiny" else 1.0)
    return model


def spans_for(n_tokens: int, n_sentences: int, seed: int = 0) -> np.ndarray:
    """Contiguous random sentence spans covering tokens ``[8, n_tokens)``."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(9, n_tokens), n_sentences - 1, replace=False))
    bounds = np.concatenate([[8], cuts, [n_tokens]])
    return np.stack([bounds[:-1], bounds[1:]], axis=1)


def timed(repeats: int, function, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
    """The value of the last call and the fastest of ``repeats`` wall times."""
    times = []
    for _ in range(repeats):
        value, seconds = synchronized_seconds(function, *args, **kwargs)
        times.append(seconds)
    return value, min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--sentences", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--query-block", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1, help="best of this many, both sides")
    parser.add_argument("--mode", choices=["full", "nucleus"], default="nucleus")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--naive-columns", type=int, default=None)
    parser.add_argument("--attention", choices=["sdpa", "eager"], default="eager")
    parser.add_argument("--atol", type=float, default=1e-4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build(args.config, args.device)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (args.tokens,), generator=torch.Generator().manual_seed(1))
    spans = spans_for(args.tokens, args.sentences)
    settings = KLSettings(mode=args.mode)
    model.set_attn_implementation(args.attention)
    fast, fast_s = timed(
        args.repeats,
        suppression_matrix,
        model,
        ids,
        spans,
        settings,
        batch_size=args.batch_size,
        query_block=args.query_block,
    )
    model.set_attn_implementation("eager")
    columns = args.naive_columns or args.sentences
    naive, naive_s = timed(
        args.repeats, reference_suppression_matrix, model, ids, spans[:columns], settings
    )
    naive_s *= (args.sentences + 1) / (columns + 1)
    difference = float(np.nanmax(np.abs(fast.log_kl[:columns, :columns] - naive)))
    print(
        f"config={args.config} device={args.device} threads={args.threads} T={args.tokens} "
        f"n={args.sentences} mode={args.mode} batch={fast.batch_size} "
        f"query_block={args.query_block} repeats={args.repeats} "
        f"attention={args.attention} (reference loop: eager)\n"
        f"fast {fast_s:.2f} s, reference loop {naive_s:.2f} s"
        f"{' (extrapolated)' if columns < args.sentences else ''}, "
        f"speed-up {naive_s / fast_s:.1f}x, max |log_kl difference| {difference:.2e}"
    )
    print(
        f"SUMMARY|suppression matrix, {args.config}, {args.tokens} tokens, {args.sentences} "
        f"sentences|reference loop {naive_s:.2f} s|fast {fast_s:.2f} s|"
        f"{naive_s / fast_s:.1f}x faster, max diff {difference:.1e}"
    )
    assert difference < args.atol, "the fast matrix differs from the reference loop"


if __name__ == "__main__":
    main()
