"""Our decode loop (shared prefill, finished rows leave the batch) against ``model.generate``,
same model, prompts and sampling settings, same run.

Two workloads on SmolLM2-135M-Instruct (``anchorflow-fetch-smollm2`` first): *arithmetic*, 48
generated problems x 2 samples as chat prompts (completions of very different lengths), and
*shared prefix*, real-trace prompts (problem plus the first sentences of 2238_correct and
2236_correct) x several samples each, forced answers of a few tokens (the patching and
counterfactual workload). ``model.generate`` samples with its own top-p sampler (the same
temperature and top-p), so the two runs draw different tokens; the table reports wall time,
generated tokens and tokens/s.

    python bench/bench_decode.py [--device cuda] [--samples 8] [--sentences 30]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import synchronized_seconds

from anchorflow.data.problem_sets import arithmetic_problems
from anchorflow.data.rollouts import acquire, requested_traces
from anchorflow.interventions.decode import GenerationItem, SamplingSettings, generate
from anchorflow.interventions.heads import stable_seed
from anchorflow.interventions.prompts import build_prompt, prefix_text
from anchorflow.models.loading import load_model
from anchorflow.models.smollm2 import model_path

ROOT = Path(__file__).resolve().parents[1]
INSTRUCTION = "{problem} Put your final answer in \\boxed{}."
CUE = "\n\nThe final answer is \\boxed{"


@torch.no_grad()
def transformers_generate(model, tokenizer, items, settings) -> int:
    """``model.generate`` on left-padded batches; returns the generated tokens (up to EOS)."""
    stop = model.generation_config.eos_token_id
    total = 0
    for start in range(0, len(items), settings.batch_size):
        batch = items[start : start + settings.batch_size]
        encoded = tokenizer(
            [item.prompt for item in batch],
            return_tensors="pt",
            padding=True,
            padding_side="left",
            add_special_tokens=False,
        ).to(model.device)
        output = model.generate(
            **encoded,
            do_sample=True,
            temperature=settings.temperature,
            top_p=settings.top_p,
            top_k=0,
            max_new_tokens=settings.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=stop,
        )[:, encoded["input_ids"].shape[1] :]
        for row in output.tolist():
            total += row.index(stop) + 1 if stop in row else len(row)
    return total


def arithmetic_items(tokenizer) -> list[GenerationItem]:
    return [
        GenerationItem(
            f"{p['problem']}/{s}",
            build_prompt(p["problem_text"], "chat", tokenizer, INSTRUCTION),
            stable_seed("bench", p["problem"], s),
        )
        for p in arithmetic_problems(48)
        for s in range(2)
    ]


def shared_prefix_items(tokenizer, samples: int, sentences: int) -> list[GenerationItem]:
    requests = requested_traces(["deepseek-r1-distill-qwen-14b"], [2236, 2238], ["correct"])
    found, _ = acquire(
        str(ROOT / "tests/data/math-rollouts"), requests, "temperature_0.6_top_p_0.95", "tree"
    )
    records = {record["trace"]: record for record in found}
    items = []
    for trace in ("2238_correct", "2236_correct"):
        record = records[trace]
        prompt = (
            build_prompt(record["problem_text"], "chat", tokenizer, INSTRUCTION)
            + prefix_text(record["chunks"], min(sentences, len(record["chunks"])))
            + CUE
        )
        items += [
            GenerationItem(f"{trace}/{s}", prompt, stable_seed("bench", trace, s))
            for s in range(samples)
        ]
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--samples", type=int, default=8, help="samples per shared prompt")
    parser.add_argument("--sentences", type=int, default=30, help="trace sentences per prompt")
    args = parser.parse_args()
    spec = {"name": "smollm2", "source": "folder", "path": str(model_path()), "dtype": "float32"}
    model, tokenizer = load_model(spec, attn_implementation="sdpa")
    model.to(args.device)
    workloads = {
        "arithmetic, 96 chat completions": (
            arithmetic_items(tokenizer),
            SamplingSettings(0.6, 0.95, 128, 96),
        ),
        f"shared prefix, 2 trace prompts x {args.samples}": (
            shared_prefix_items(tokenizer, args.samples, args.sentences),
            SamplingSettings(0.6, 0.95, 16, 2 * args.samples),
        ),
    }
    print(f"device {args.device}, SmolLM2-135M-Instruct float32, SDPA")
    print("| workload | decoder | seconds | tokens | tokens/s |")
    print("|---|---|---|---|---|")
    for name, (items, settings) in workloads.items():
        ours_rows, ours = synchronized_seconds(
            generate, model, tokenizer, items, settings, (), None, False
        )
        ours_tokens = sum(row["n_tokens"] for row in ours_rows)
        theirs_tokens, theirs = synchronized_seconds(
            transformers_generate, model, tokenizer, items, settings
        )
        for decoder, seconds, tokens in (
            ("model.generate", theirs, theirs_tokens),
            ("anchorflow", ours, ours_tokens),
        ):
            print(f"| {name} | {decoder} | {seconds:.1f} | {tokens} | {tokens / seconds:.0f} |")
        print(
            f"SUMMARY|decode loop, {name}|model.generate {theirs:.1f} s|anchorflow {ours:.1f} s|"
            f"{theirs / ours:.1f}x faster"
        )


if __name__ == "__main__":
    main()
