"""Half-precision parity: streamed sentence attention against eager ``output_attentions``.

One decoder layer with the DeepSeek-R1-Distill-Qwen-14B shape (40 heads, 8 KV heads, hidden
5120) in float16 on CUDA, ``--tokens`` tokens: the sentence-attention matrices of the streamed
pass against the reference's naive extraction from ``output_attentions=True``. On CPU
(``--device cpu``) a tiny float32 layer. Prints the largest absolute and relative differences
and a summary line.

    python bench/bench_parity16.py --device cuda --tokens 4096
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import synchronized_seconds

from anchorflow.attention import sentence_attention
from anchorflow.models.tiny import QWEN14B_SHAPE, random_causal_lm
from anchorflow.reference import naive_sentence_attention

TINY = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_attention_heads=8,
    num_key_value_heads=4,
    max_position_embeddings=8192,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--query-block", type=int, default=256)
    args = parser.parse_args()
    shape = {**(QWEN14B_SHAPE if args.device == "cuda" else TINY), "num_hidden_layers": 1}
    dtype = torch.float16 if args.device == "cuda" else torch.float32
    model = random_causal_lm(
        "qwen2", device=args.device, dtype=dtype, attn_implementation="eager", **shape
    )
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, shape["vocab_size"], (1, args.tokens), generator=generator)
    ids = ids.to(args.device)
    bounds = np.arange(40, args.tokens - 5, 25)
    spans = np.stack([bounds[:-1], bounds[1:]], axis=1)
    streamed, streamed_s = synchronized_seconds(
        sentence_attention, model, ids, spans, query_block=args.query_block
    )
    naive, naive_s = synchronized_seconds(naive_sentence_attention, model, ids, spans)
    absolute = float(np.nanmax(np.abs(streamed - naive)))
    relative = float(np.nanmax(np.abs(streamed - naive) / np.maximum(np.abs(naive), 1e-6)))
    print(
        f"device {args.device}, {dtype}, 1 layer x {shape['num_attention_heads']} heads, "
        f"{args.tokens} tokens, {len(spans)} sentences: max |difference| {absolute:.2e}, "
        f"max relative {relative:.2e}; streamed {streamed_s:.2f} s, naive {naive_s:.2f} s"
    )
    print(
        f"SUMMARY|{dtype} parity, 1 layer, {args.tokens} tokens|naive {naive_s:.2f} s|"
        f"streamed {streamed_s:.2f} s|max abs diff {absolute:.1e}, rel {relative:.1e}"
    )
    tolerance = 5e-3 if dtype == torch.float16 else 1e-5
    assert absolute < tolerance, "streamed attention departs from eager output_attentions"


if __name__ == "__main__":
    main()
