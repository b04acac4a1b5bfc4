"""Benchmark: streamed sentence attention against the reference's naive extraction.

CPU (default): a randomly initialised tiny Qwen2 model (8 layers x 8 heads, GQA) at 1k, 2k and
4k tokens. Each measurement runs in a fresh subprocess, so the peak resident memory
(``ru_maxrss``) of one method is not hidden by the other's; the reported memory is the peak
RSS minus the RSS after the model and input were built. The naive path is the reference's:
one eager forward with ``output_attentions=True`` keeping every layer's ``[heads, T, T]``
weights, then per head a Python double loop of ``np.mean`` over token blocks. Both results
must agree within 1e-5 relative.

GPU (``--device cuda --config qwen14b``): a randomly initialised model with the
DeepSeek-R1-Distill-Qwen-14B config (48 layers x 40 heads, 8 KV heads, float16) at 4k and 7k
tokens; time and peak GPU memory of the streamed pass against a plain SDPA forward pass of the
same input (the naive path needs ~188 GB at 7k tokens and is not run).

    python bench/bench_attention.py                      # CPU, tiny model, 1k/2k/4k
    python bench/bench_attention.py --device cuda --config qwen14b --tokens 4096 7000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from common import synchronized_seconds
from transformers import Qwen2ForCausalLM

from anchorflow.attention import sentence_attention
from anchorflow.models.tiny import QWEN14B_SHAPE, random_causal_lm
from anchorflow.reference import naive_sentence_attention

CONFIGS = {
    "tiny": dict(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=8192,
    ),
    "qwen14b": QWEN14B_SHAPE,
}
PROMPT_TOKENS = 40
SENTENCE_TOKENS = 25


def sentence_spans(length: int) -> np.ndarray:
    """Sentences of 25 tokens after a 40-token prompt, leaving a few tokens after the last."""
    bounds = np.arange(PROMPT_TOKENS, length - 5, SENTENCE_TOKENS)
    return np.stack([bounds[:-1], bounds[1:]], axis=1)


def build(config: str, device: str, attn_implementation: str) -> Qwen2ForCausalLM:
    """A randomly initialised model (seed 0): float32 on CPU, float16 on CUDA."""
    dtype = torch.float16 if device == "cuda" else torch.float32
    return random_causal_lm(
        "qwen2",
        device=device,
        dtype=dtype,
        attn_implementation=attn_implementation,
        **CONFIGS[config],
    )


def rss_mb() -> float:
    """The current resident set size of this process in MB."""
    with open("/proc/self/statm") as stream:
        pages = int(stream.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def cpu_worker(method: str, length: int, query_block: int, out: Path) -> dict:
    """One CPU measurement in this (fresh) process: time and peak RSS above the baseline."""
    model = build("tiny", "cpu", "eager")
    input_ids = torch.randint(0, 256, (1, length), generator=torch.Generator().manual_seed(1))
    spans = sentence_spans(length)
    baseline = rss_mb()
    start = time.perf_counter()
    if method == "streamed":
        result = sentence_attention(model, input_ids, spans, query_block=query_block)
    else:
        result = naive_sentence_attention(model, input_ids, spans)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.save(out, result)
    return {"seconds": seconds, "peak_mb": peak - baseline, "n_sentences": len(spans)}


def run_cpu(lengths: list[int], query_block: int) -> list[dict]:
    """Streamed and naive at each length, each in its own subprocess; results compared."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for length in lengths:
            measured = {}
            for method in ("streamed", "naive"):
                out = Path(tmp) / f"{method}_{length}.npy"
                command = [
                    sys.executable,
                    __file__,
                    "--worker",
                    method,
                    "--tokens",
                    str(length),
                    "--query-block",
                    str(query_block),
                    "--out",
                    str(out),
                ]
                completed = subprocess.run(command, capture_output=True, text=True, check=True)
                measured[method] = json.loads(completed.stdout.strip().splitlines()[-1])
                measured[method]["result"] = np.load(out)
            np.testing.assert_allclose(
                measured["streamed"]["result"], measured["naive"]["result"], rtol=1e-5, atol=0
            )
            streamed, naive = measured["streamed"], measured["naive"]
            rows.append(
                {
                    "tokens": length,
                    "sentences": streamed["n_sentences"],
                    "naive_s": naive["seconds"],
                    "streamed_s": streamed["seconds"],
                    "speedup": naive["seconds"] / streamed["seconds"],
                    "naive_peak_mb": naive["peak_mb"],
                    "streamed_peak_mb": streamed["peak_mb"],
                    "memory_ratio": naive["peak_mb"] / streamed["peak_mb"],
                }
            )
    return rows


@torch.no_grad()
def sdpa_forward(model: Qwen2ForCausalLM, input_ids: torch.Tensor) -> None:
    """A plain forward pass of the decoder (no logits), as the model is loaded."""
    model.base_model(input_ids=input_ids, use_cache=False)


def run_cuda(config: str, lengths: list[int], query_block: int, repeats: int = 3) -> list[dict]:
    """Streamed pass against a plain SDPA forward on one GPU: median time and peak memory."""
    model = build(config, "cuda", "sdpa")
    rows = []
    for length in lengths:
        input_ids = torch.randint(0, 1000, (1, length), device="cuda")
        spans = sentence_spans(length)

        plain = partial(sdpa_forward, model, input_ids)
        streamed = partial(sentence_attention, model, input_ids, spans, query_block)
        measured = {}
        for name, run in (("sdpa", plain), ("streamed", streamed)):
            run()
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            times = [synchronized_seconds(run)[1] for _ in range(repeats)]
            measured[name] = (float(np.median(times)), torch.cuda.max_memory_allocated() / 2**30)
        rows.append(
            {
                "tokens": length,
                "sentences": len(spans),
                "sdpa_s": measured["sdpa"][0],
                "streamed_s": measured["streamed"][0],
                "time_ratio": measured["streamed"][0] / measured["sdpa"][0],
                "sdpa_peak_gib": measured["sdpa"][1],
                "streamed_peak_gib": measured["streamed"][1],
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    """A markdown table of result rows."""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            f"{value:.3g}" if isinstance(value, float) else str(value) for value in row.values()
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="tiny")
    parser.add_argument("--tokens", type=int, nargs="+")
    parser.add_argument("--query-block", type=int, default=256)
    parser.add_argument("--worker", choices=["streamed", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(cpu_worker(args.worker, args.tokens[0], args.query_block, args.out)))
        return
    if args.device == "cuda":
        rows = run_cuda(args.config, args.tokens or [4096, 7000], args.query_block)
    else:
        if args.config != "tiny":
            parser.error("the CPU benchmark runs the tiny model only")
        rows = run_cpu(args.tokens or [1024, 2048, 4096], args.query_block)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
        f"config {args.config}, query_block {args.query_block}"
    )
    print(markdown(rows))
    for row in rows:
        if "sdpa_s" in row:
            print(
                f"SUMMARY|streamed attention, {args.config}, {row['tokens']} tokens|"
                f"SDPA forward {row['sdpa_s']:.2f} s, {row['sdpa_peak_gib']:.1f} GiB|"
                f"streamed {row['streamed_s']:.2f} s, {row['streamed_peak_gib']:.1f} GiB|"
                f"{row['time_ratio']:.2f}x the forward's time"
            )
        else:
            print(
                f"SUMMARY|streamed attention, {args.config}, {row['tokens']} tokens|"
                f"naive {row['naive_s']:.2f} s, {row['naive_peak_mb']:.0f} MB|"
                f"streamed {row['streamed_s']:.2f} s, {row['streamed_peak_mb']:.0f} MB|"
                f"{row['speedup']:.1f}x faster, {row['memory_ratio']:.1f}x less memory"
            )


if __name__ == "__main__":
    main()
