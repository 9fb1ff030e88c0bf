#!/usr/bin/env bash
# Twins of one base model on one machine: N twins (each SmolLM2-135M-Instruct Q4_1 with its own
# GGUF LoRA adapter, from scripts/make-adapters) served by one `twin up` that loads the model
# once and answers them all from one engine, next to N separate `twin serve` processes, one per
# twin, in the same run on this machine. For N in 1, 3 and 8 it prints each side's memory (the
# processes' peak resident set, and their proportional set size, which counts the model file's
# pages once however many processes map it) and generation tokens/s with every twin asked at
# once (2 requests in flight per twin, 4 per twin in all, 64 tokens each at most).
#
#   benches/shared-twins.sh
#   TWIN_BENCH_TWINS="1 3" TWIN_BIN=target/debug/twin benches/shared-twins.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-models >/dev/null
twin=${TWIN_BIN:-}
if [ -z "$twin" ]; then
  cargo build --release --quiet --bin twin
  twin=target/release/twin
fi
counts=${TWIN_BENCH_TWINS:-1 3 8}
model=$PWD/.cache/models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf
work=$(mktemp -d /tmp/twin-shared-bench.XXXXXX)
trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$work"' EXIT
most=$(echo "$counts" | tr ' ' '\n' | sort -n | tail -1)
scripts/make-adapters "$work/adapters" "$most" >/dev/null

# Peak RSS and PSS (MiB) summed over the given pids.
memory() {
  python3 - "$@" <<'PY'
import sys
hwm = pss = 0
for pid in sys.argv[1:]:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            hwm += int(line.split()[1])
    for line in open(f"/proc/{pid}/smaps_rollup"):
        if line.startswith("Pss:"):
            pss += int(line.split()[1])
print(f"{hwm / 1024:.0f} {pss / 1024:.0f}")
PY
}

# Asks every twin at once (base URLs as arguments); prints generated tokens/s over the wall time.
load() {
  python3 - "$@" <<'PY'
import json, sys, threading, time, urllib.request
urls = sys.argv[1:]
tokens = []
lock = threading.Lock()
def ask(url, seed):
    body = json.dumps({"messages": [{"role": "user", "content": "Tell me about your week, in detail."}],
                       "max_tokens": 64, "temperature": 0.8, "seed": seed}).encode()
    request = urllib.request.Request(url + "/v1/chat/completions", body, {"content-type": "application/json"})
    answer = json.load(urllib.request.urlopen(request, timeout=600))
    with lock:
        tokens.append(answer["usage"]["completion_tokens"])
def worker(url, first):
    for seed in (first, first + 100):
        ask(url, seed)
started = time.time()
threads = [threading.Thread(target=worker, args=(url, 2 * i + k)) for i, url in enumerate(urls) for k in range(2)]
for t in threads: t.start()
for t in threads: t.join()
wall = time.time() - started
print(f"{sum(tokens) / wall:.1f} {sum(tokens)} {wall:.1f}")
PY
}

wait_ready() {
  for url in "$@"; do
    for _ in $(seq 600); do
      curl -sf "$url/readyz" >/dev/null && break
      sleep 0.2
    done
  done
}

# Loads the twins at the URLs once they are ready, then prints a row of the table for the
# processes PIDS (SETUP describes them) and stops them.
#   measure N SETUP PID... -- URL...
measure() {
  local n=$1 setup=$2 pids=()
  shift 2
  while [ "$1" != "--" ]; do pids+=("$1"); shift; done
  shift
  wait_ready "$@"
  local speed hwm pss rate count seconds
  speed=$(load "$@")
  read -r hwm pss < <(memory "${pids[@]}")
  read -r rate count seconds <<<"$speed"
  echo "| $n | $setup | $hwm | $pss | $rate ($count, ${seconds} s) |"
  kill -TERM "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
}

echo "| twins | setup | peak RSS, MiB | PSS, MiB | generation tokens/s (tokens, seconds) |"
echo "|---|---|---|---|---|"
for n in $counts; do
  # Shared: one twin up, N endpoints of one base model.
  yaml="$work/twins-$n.yaml"
  : > "$yaml"
  for i in $(seq 0 $((n - 1))); do
    cat >> "$yaml" <<EOF
apiVersion: llmtwin.dev/v1alpha1
kind: TwinEndpoint
metadata: {name: twin-$i}
spec:
  model: {baseModel: {uri: "file://$model"}, adapterUri: "file://$work/adapters/twin-$i.gguf"}
  engine: {kind: embedded}
---
EOF
  done
  "$twin" up -f "$yaml" --state-dir "$work/state-$n" --listen 127.0.0.1:18600 --models-dir .cache/models \
    >"$work/up-$n.log" 2>&1 &
  up=$!
  urls=()
  for i in $(seq 0 $((n - 1))); do urls+=("http://127.0.0.1:$((18600 + i))"); done
  measure "$n" "one twin up, one engine" "$up" -- "${urls[@]}"

  # Separate: N twin serve processes, one twin each.
  pids=()
  urls=()
  for i in $(seq 0 $((n - 1))); do
    "$twin" serve --model "$model" --adapter "$work/adapters/twin-$i.gguf" --models-dir .cache/models \
      --listen "127.0.0.1:$((18700 + i))" >"$work/serve-$n-$i.log" 2>&1 &
    pids+=($!)
    urls+=("http://127.0.0.1:$((18700 + i))")
  done
  measure "$n" "$n twin serve processes" "${pids[@]}" -- "${urls[@]}"
done
