#!/usr/bin/env bash
# Benchmark of the dataset pipeline on a real corpus, "The Rust Programming Language" HTML
# that ships with the Rust toolchain, next to the reference Python stack (sentence-transformers
# all-MiniLM-L6-v2 + LangChain's recursive splitter) on the same files, same machine, same run.
# Also times a refresh after one new document.
#
#   benches/dataset_pipeline.sh            (needs a Python with sentence-transformers and
#                                          langchain-text-splitters: PYTHON=... to choose it)
#
# Reports documents/s, chunks/s, embeddings/s and peak memory (max RSS) of both.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.cache/refenv/bin/python}
scripts/fetch-models >/dev/null
cargo build --release --quiet --bin twin
work=/tmp/twin-bench
rm -rf "$work" && mkdir -p "$work/corpus"
cp "$(rustc --print sysroot)"/share/doc/rust/html/book/*.html "$work/corpus/"
model="$PWD/.cache/models/all-MiniLM-L6-v2"
cat > "$work/dataset.yaml" <<YAML
apiVersion: llmtwin.dev/v1alpha1
kind: TwinDataset
metadata: {name: bench}
spec:
  author: {name: Bench}
  sources:
  - name: book
    files: {uri: "file://$work/corpus", include: ["*.html"], exclude: ["print.html", "toc.html", "404.html", "index.html", "title-page.html"]}
  chunking: {maxTokens: 256, overlapTokens: 32}
  embedding: {model: "file://$model", batchSize: 8}
  output: {uri: "file://$work/out"}
YAML

measure() { # label, command...: runs it, keeps stdout in $work/<label>.json and max RSS in $work/<label>.rss
  local label=$1; shift
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$work/$label.rss" "$@" > "$work/$label.json" 2> "$work/$label.log"
  end=$(date +%s.%N)
  echo "$end - $start" | bc > "$work/$label.seconds"
}

echo "corpus: $(ls "$work/corpus" | wc -l) HTML files; $(nproc) CPUs"
measure twin-cold ./target/release/twin dataset build -f "$work/dataset.yaml"
cat > "$work/corpus/zz-new-chapter.html" <<'HTML'
<html><head><title>A new chapter</title></head><body><main><h1>A new chapter</h1>
<p>This chapter was added after the first build, to time a refresh: only its passages need embedding, everything else comes from the cache and the revision changes because the corpus did.</p>
<p>Refreshes are what a scheduled TwinDataset does every night, so their cost is what a cluster pays day after day, while a cold build is paid once.</p></main></body></html>
HTML
measure twin-refresh ./target/release/twin dataset build -f "$work/dataset.yaml"
rm "$work/corpus/zz-new-chapter.html"
# The same book crawled over HTTP from 127.0.0.1: start at its table of contents, follow links
# three deep; robots.txt keeps the crawler off the one-page print version.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/site" && cp "$work/corpus"/*.html "$work/site/"
printf 'User-agent: *\nDisallow: /print.html\nDisallow: /404.html\n' > "$work/site/robots.txt"
python3 -m http.server --bind 127.0.0.1 --directory "$work/site" "$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
sed -e "s|files: {uri: \"file://$work/corpus\".*|web: {urls: [\"http://127.0.0.1:$port/toc.html\"], maxDepth: 3, maxPages: 400}|" \
    -e "s|file://$work/out|file://$work/out-web|" "$work/dataset.yaml" > "$work/web.yaml"
sleep 1
measure twin-web ./target/release/twin dataset build --allow-network 127.0.0.1/32 -f "$work/web.yaml"
HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=true measure reference "$python" benches/reference_pipeline.py "$work/corpus" "$model"

"$python" - "$work" <<'PY'
import json, sys
work = sys.argv[1]
def load(label):
    result = json.load(open(f"{work}/{label}.json"))
    seconds = float(open(f"{work}/{label}.seconds").read())
    rss = int(open(f"{work}/{label}.rss").read().split()[-1]) / 1024
    return result, seconds, rss
cold, cold_s, cold_rss = load("twin-cold")
refresh, refresh_s, refresh_rss = load("twin-refresh")
ref, ref_s, ref_rss = load("reference")
def row(name, docs, chunks, embedded, embed_s, total_s, rss):
    print(f"{name:<22} {docs:>5} docs {chunks:>6} chunks | {total_s:7.1f} s total | {docs/total_s:6.2f} docs/s {chunks/total_s:6.1f} chunks/s {embedded/embed_s if embed_s else 0:6.1f} embeddings/s | peak {rss:7.1f} MiB")
t = cold["timings"]
row("twin (cold)", cold["stats"]["documents"], cold["stats"]["chunks"], cold["embeddedChunks"], t["embed"], cold_s, cold_rss)
t = refresh["timings"]
row("twin (refresh +1 doc)", refresh["stats"]["documents"], refresh["stats"]["chunks"], refresh["embeddedChunks"], t["embed"], refresh_s, refresh_rss)
web, web_s, web_rss = load("twin-web")
t = web["timings"]
row("twin (crawled, HTTP)", web["stats"]["documents"], web["stats"]["chunks"], web["embeddedChunks"], t["embed"], web_s, web_rss)
rt = ref["timings"]
row("reference (python)", ref["documents"], ref["chunks"], ref["chunks"], rt["embed"], ref_s, ref_rss)
print(f"cold run vs reference: {ref_s / cold_s:.2f}x the speed, {cold_rss / ref_rss:.2f}x the peak memory; refresh: {cold_s / refresh_s:.1f}x faster than a cold run")
PY
