#!/usr/bin/env bash
# Benchmark of the gateway (`twin serve`), all parts in one run on this machine: overhead next
# to a direct call and LiteLLM's proxy, retrieval next to faiss-cpu, the embedded engine's
# tokens/s, and memory at 100k chunks. Installs the peers (litellm[proxy], faiss-cpu, numpy)
# into .cache/bench-python (gitignored) the first time.
#
#   benches/gateway.sh
#   TWIN_BENCH_PARTS=retrieval TWIN_BENCH_SECONDS=10 benches/gateway.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-models >/dev/null
if [ ! -d .cache/bench-python/litellm ] || [ ! -d .cache/bench-python/faiss ]; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target .cache/bench-python \
    "litellm[proxy]" faiss-cpu numpy
fi
cargo build --release --quiet --bin twin
cargo bench --quiet --bench gateway
