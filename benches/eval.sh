#!/usr/bin/env bash
# Benchmark of `twin eval` on the quickstart's twin (SmolLM2-135M-Instruct with the adapter the
# quickstart trained, on "The Rust Programming Language"), on this machine, next to Ragas's
# non-LLM metrics on the same answers:
#   1. the whole evaluation: likelihood on every held-out passage of the test split (and as many
#      control passages as the control text has), answers to the default 8 questions;
#   2. the quickstart's evaluation, sized for a 2-core CPU (the goal: under 60 s);
#   3. Ragas 0.4.3 (NonLLMStringSimilarity of each answer to its reference passage,
#      NonLLMContextRecall of the passages the gateway used) on run 1's answers, timed, in a
#      Python environment kept outside the clone (benches/eval_ragas.py).
# Needs the quickstart's output (scripts/quickstart, which leaves it in /tmp/twin-quickstart).
# Reports wall time and peak memory (max RSS) of each, and the figures side by side.
#
#   benches/eval.sh
#   RAGAS=none benches/eval.sh      leaves Ragas out
set -euo pipefail
cd "$(dirname "$0")/.."
dataset=/tmp/twin-quickstart/out/datasets/rust-book
run=$(ls -d /tmp/twin-quickstart/out/models/rust-book-v1/* 2>/dev/null | tail -1)
if [ ! -f "$dataset/LATEST" ] || [ -z "$run" ] || [ ! -f "$run/adapter.gguf" ]; then
  echo "error: run scripts/quickstart first: it builds the dataset and trains the adapter this benchmark evaluates" >&2
  exit 1
fi
cargo build --release --locked --quiet --bin twin
work=/tmp/twin-bench-eval
rm -rf "$work" && mkdir -p "$work"
model=.cache/models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf
timed() { # name, then the command: runs it under GNU time, prints wall seconds and max RSS
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/$name.time" "$@" > "$work/$name.out" 2> "$work/$name.err" || {
    cat "$work/$name.err" >&2; exit 1; }
  read -r seconds kib < "$work/$name.time"
  printf '%-34s %8.1f s %8.0f MiB\n' "$name" "$seconds" "$(echo "$kib / 1024" | bc -l)"
}
common=(eval --dataset "file://$dataset" --model "$model" --adapter "$run/adapter.gguf" --models-dir .cache/models)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
HF_HUB_OFFLINE=1 timed "twin eval, whole test split" target/release/twin "${common[@]}" --passages 0 --out "$work/whole"
HF_HUB_OFFLINE=1 timed "twin eval, quickstart's settings" target/release/twin "${common[@]}" \
  --questions 2 --passages 5 --max-tokens 40 --top-k 2 --out "$work/quick"
echo
echo "whole test split:"
cat "$work/twin eval, whole test split.out"
echo
echo "quickstart's settings:"
cat "$work/twin eval, quickstart's settings.out"
if [ "${RAGAS:-}" != none ]; then
  cache="${TWIN_CACHE:-$HOME/.cache/twin-operator}"
  env="$cache/ragas-0.4.3"
  if [ ! -x "$env/bin/python" ]; then
    uv="$cache/uv-0.13.9/bin/uv"
    [ -x "$uv" ] || python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
      --target "$cache/uv-0.13.9" "uv==0.13.9" >&2
    rm -rf "$env.partial"
    "$uv" venv -q "$env.partial" --python 3.11
    # Ragas 0.4.3 with the LangChain of its day (later ones dropped modules it imports).
    UV_CACHE_DIR="$cache/uv-cache" VIRTUAL_ENV="$env.partial" "$uv" pip install -q --exclude-newer 2026-02-01 \
      ragas==0.4.3 rapidfuzz
    mv "$env.partial" "$env"
  fi
  echo
  "$env/bin/python" -W ignore benches/eval_ragas.py "$work/whole/evaluation.json" "$dataset/$(cat "$dataset/LATEST")/chunks.jsonl"
fi
