#!/usr/bin/env bash
# Every GPU benchmark of the project in one run, one summary table at the end.
#
#   bench/gpu_suite.sh                # one CUDA GPU (H100/H200 class): the paper's shapes
#   bench/gpu_suite.sh --device cpu   # tiny shapes on the CPU (CI runs this so it does not rot)
#
# On CUDA: streamed attention at 4k and 7k tokens against a plain SDPA forward (14B shape, float16;
# time and peak memory), the suppression matrix against the reference loop on a few columns (14B
# shape), batched generation against one prompt at a time (1.5B shape), and float16 parity of the
# streamed attention against eager output_attentions on one 14B-shaped layer.
set -euo pipefail
device=cuda
if [[ "${1:-}" == "--device" ]]; then device="${2:?--device needs cuda or cpu}"; fi
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
run() {
  echo "== $*" >&2
  (cd "$here" && "$python" "$@") | tee -a "$log" >&2
}
if [[ "$device" == cuda ]]; then
  run bench_attention.py --device cuda --config qwen14b --tokens 4096 7000
  run bench_suppression.py --device cuda --config qwen14b --tokens 4096 --sentences 120 --naive-columns 4
  run bench_generation.py --device cuda --config qwen1.5b --prompts 64 --batch-size 32 --new-tokens 256
  run bench_parity16.py --device cuda --tokens 4096
elif [[ "$device" == cpu ]]; then
  run bench_attention.py --device cpu --tokens 512 1024
  run bench_suppression.py --device cpu --tokens 256 --sentences 12 --naive-columns 4
  run bench_generation.py --device cpu --prompts 8 --batch-size 4 --new-tokens 16
  run bench_parity16.py --device cpu --tokens 512
else
  echo "unknown device $device (cuda or cpu)" >&2
  exit 2
fi
echo "| benchmark | baseline | anchorflow | result |"
echo "|---|---|---|---|"
awk -F'|' '/^SUMMARY[|]/ { printf "| %s | %s | %s | %s |\n", $2, $3, $4, $5 }' "$log"
test "$(grep -c '^SUMMARY|' "$log")" -ge 5
