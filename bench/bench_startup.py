"""Where a model job's time goes: interpreter start, imports, tokenizer load, model load and
compute, for one sentence_attention job on one trace (in a fresh process, as a job runs).

    python bench/bench_startup.py [--model results/demo/models/demo-qwen2] [--trace 101_correct]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

WORKER = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
from transformers import AutoModelForCausalLM
from anchorflow.attention import trace_attention
from anchorflow.io import read_json
from anchorflow.models.loading import load_model, load_tokenizer
from anchorflow.data.rollouts import get_record
t1 = time.perf_counter()
spec = {"name": "m", "source": "folder", "path": sys.argv[2], "dtype": "float32"}
tokenizer = load_tokenizer(spec)
t2 = time.perf_counter()
model, _ = load_model(spec)
t3 = time.perf_counter()
record = get_record(sys.argv[3], sys.argv[5], sys.argv[4])
tokens = read_json(sys.argv[6])
trace_attention(model, tokenizer, record["full_cot"], tokens["token_spans"], tokens["n_tokens"],
                query_block=256, proximity_ignore=4, control_depth=False, save_matrices=False)
t4 = time.perf_counter()
stacks = ("matplotlib", "seaborn", "anthropic", "sentence_transformers")
heavy = [m for m in stacks if m in sys.modules]
print(json.dumps({"imports": t1 - t0, "tokenizer": t2 - t1,
                  "model_load": t3 - t2, "compute": t4 - t3, "plot_or_api_modules": heavy}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="results/demo")
    parser.add_argument("--model", default="demo-qwen2")
    parser.add_argument("--rollouts", default="demo-r1-distill")
    parser.add_argument("--trace", default="101_correct")
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    rows = []
    for _ in range(arguments.repeats):
        command = [
            sys.executable,
            "-c",
            WORKER,
            "0",
            f"{arguments.run}/models/{arguments.model}",
            f"{arguments.run}/rollouts/records.jsonl",
            arguments.trace,
            arguments.rollouts,
            f"{arguments.run}/tokens/{arguments.model}/{arguments.trace}.json",
        ]
        start = time.perf_counter()
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        total = time.perf_counter() - start
        row = json.loads(output.strip().splitlines()[-1])
        row["total"] = total
        rows.append(row)
    keys = ["imports", "tokenizer", "model_load", "compute", "total"]
    print(f"| phase | seconds (median of {arguments.repeats}) |")
    print("|---|---|")
    for key in keys:
        values = sorted(row[key] for row in rows)
        print(f"| {key} | {values[len(values) // 2]:.2f} |")
    interpreter = sorted(row["total"] - sum(row[k] for k in keys[:-1]) for row in rows)
    print(f"| interpreter start and exit | {interpreter[len(interpreter) // 2]:.2f} |")
    print(f"plot/API modules imported by the job: {rows[0]['plot_or_api_modules'] or 'none'}")


if __name__ == "__main__":
    main()
