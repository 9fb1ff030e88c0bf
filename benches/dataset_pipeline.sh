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
#
#   TWIN_BENCH_BASELINE=PATH   also times another `twin` binary (an earlier commit's release
#                              build) on the same corpus in the same run, right after ours
#   PYTHON=none                leaves the reference stack out
#
# The cold build's training data is also audited by scripts/audit-training-data, whose counts
# are printed next to the quality report's.
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
if [ -n "${TWIN_BENCH_BASELINE:-}" ]; then
  sed -e "s|file://$work/out|file://$work/out-baseline|" "$work/dataset.yaml" > "$work/baseline.yaml"
  measure twin-baseline "$TWIN_BENCH_BASELINE" dataset build -f "$work/baseline.yaml"
fi
revision=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["revision"])' "$work/twin-cold.json")
scripts/audit-training-data "$work/out/datasets/bench/$revision" --json > "$work/audit.json"
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
revision=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["revision"])' "$work/twin-web.json")
scripts/audit-training-data "$work/out-web/datasets/bench/$revision" --json > "$work/audit-web.json"
if [ "$python" != none ]; then
  HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=true measure reference "$python" benches/reference_pipeline.py "$work/corpus" "$model"
fi

python3 - "$work" <<'PY'
import json, os, sys
work = sys.argv[1]
def load(label):
    result = json.load(open(f"{work}/{label}.json"))
    seconds = float(open(f"{work}/{label}.seconds").read())
    rss = int(open(f"{work}/{label}.rss").read().split()[-1]) / 1024
    return result, seconds, rss
cold, cold_s, cold_rss = load("twin-cold")
refresh, refresh_s, refresh_rss = load("twin-refresh")
def row(name, docs, chunks, embedded, embed_s, total_s, rss):
    print(f"{name:<22} {docs:>5} docs {chunks:>6} chunks | {total_s:7.1f} s total | {docs/total_s:6.2f} docs/s {chunks/total_s:6.1f} chunks/s {embedded/embed_s if embed_s else 0:6.1f} embeddings/s | peak {rss:7.1f} MiB")
t = cold["timings"]
row("twin (cold)", cold["stats"]["documents"], cold["stats"]["chunks"], cold["embeddedChunks"], t["embed"], cold_s, cold_rss)
t = refresh["timings"]
row("twin (refresh +1 doc)", refresh["stats"]["documents"], refresh["stats"]["chunks"], refresh["embeddedChunks"], t["embed"], refresh_s, refresh_rss)
web, web_s, web_rss = load("twin-web")
t = web["timings"]
row("twin (crawled, HTTP)", web["stats"]["documents"], web["stats"]["chunks"], web["embeddedChunks"], t["embed"], web_s, web_rss)
if os.path.exists(f"{work}/twin-baseline.json"):
    base, base_s, base_rss = load("twin-baseline")
    t = base["timings"]
    row("baseline twin (cold)", base["stats"]["documents"], base["stats"]["chunks"], base["embeddedChunks"], t["embed"], base_s, base_rss)
    print(f"cold run vs baseline: {cold_s / base_s:.3f}x the time, {cold_rss / base_rss:.2f}x the peak memory; "
          f"samples {cold['stats']['instructSamples']} vs {base['stats']['instructSamples']}")
if os.path.exists(f"{work}/reference.json"):
    ref, ref_s, ref_rss = load("reference")
    rt = ref["timings"]
    row("reference (python)", ref["documents"], ref["chunks"], ref["chunks"], rt["embed"], ref_s, ref_rss)
    print(f"cold run vs reference: {ref_s / cold_s:.2f}x the speed, {cold_rss / ref_rss:.2f}x the peak memory")
print(f"refresh: {cold_s / refresh_s:.1f}x faster than a cold run")
for label, result, audited in (("files", cold, "audit"), ("crawled", web, "audit-web")):
    quality, audit = result["quality"], json.load(open(f"{work}/{audited}.json"))
    print(f"training data of the {label} build: the quality report and scripts/audit-training-data")
    for key in ("answersWithLinkSyntax", "answersWithAnchors", "answersWithSiteUrls", "answersStartingMidSentence", "crossPosts"):
        mark = "" if quality.get(key) == audit.get(key) else "   <- differs"
        print(f"  {key:<28} report {json.dumps(quality.get(key))}  audit {json.dumps(audit.get(key))}{mark}")
    print(f"  {'crossPostsLeft':<28} audit {audit['crossPostsLeft']}")
PY
