#!/usr/bin/env bash
# Benchmark: does batching pay for the embedded engine, by weight quantisation? Rewrites the
# default model's Q4_1 weights as Q4_0, Q8_0 and F16 (with PyPI's `gguf`, installed into
# .cache/bench-python, gitignored) and measures one streamed answer against eight at once.
#
#   benches/engine_quantisations.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-models >/dev/null
if [ ! -d .cache/bench-python/gguf ]; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target .cache/bench-python \
    gguf numpy
fi
cargo build --release --quiet --bin twin
PYTHONPATH=.cache/bench-python python3 benches/engine_quantisations.py
