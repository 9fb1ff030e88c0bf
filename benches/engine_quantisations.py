"""The embedded engine's batching across GGUF quantisations of the default model.

llama.cpp repacks some weight types (Q4_0, IQ4_NL, Q4_K) into layouts whose x86 kernels
multiply several tokens at once, and has none for others (Q4_1, the default model's). This
rewrites SmolLM2-135M-Instruct's Q4_1 weights as Q4_0, Q8_0 and F16 with the `gguf` package,
serves each with `twin serve --engine embedded`, and measures generation tokens/s for one
streamed answer alone and for eight at once (first to last token, tokens from `usage`).

    benches/engine_quantisations.sh
"""

import json
import os
import subprocess
import sys
import threading
import time
import http.client
import urllib.request

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, quants

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, ".cache/models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
WORK = os.path.join(ROOT, ".cache/bench/quantisations")
TWIN = os.environ.get("TWIN_BENCH_TWIN", os.path.join(ROOT, "target/release/twin"))
ROUNDS = 3


def requantise(target_name):
    """The source model with every Q4_1 tensor rewritten as `target_name` (metadata kept)."""
    path = os.path.join(WORK, f"SmolLM2-135M-Instruct.{target_name}.gguf")
    if os.path.exists(path):
        return path
    target = GGMLQuantizationType[target_name]
    reader = GGUFReader(SOURCE)
    arch = reader.fields["general.architecture"]
    writer = GGUFWriter(path + ".partial", bytes(arch.parts[arch.data[0]]).decode())
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        kind = field.types[0]
        if kind == GGUFValueType.ARRAY:
            sub = field.types[-1]
            if sub == GGUFValueType.STRING:
                value = [bytes(field.parts[i]).decode("utf-8", "replace") for i in field.data]
            else:
                value = [field.parts[i].tolist()[0] for i in field.data]
            writer.add_key_value(name, value, kind, sub_type=sub)
        elif kind == GGUFValueType.STRING:
            writer.add_key_value(name, bytes(field.parts[field.data[0]]).decode("utf-8", "replace"), kind)
        else:
            writer.add_key_value(name, field.parts[field.data[0]].tolist()[0], kind)
    for tensor in reader.tensors:
        if tensor.tensor_type == GGMLQuantizationType.Q4_1:
            weights = quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
            writer.add_tensor(tensor.name, quants.quantize(weights, target), raw_dtype=target)
        else:
            writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(path + ".partial", path)
    return path


def answer(port, seed, results):
    """One streamed answer: (first token time, last token time, completion tokens)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = json.dumps({
        "messages": [{"role": "user", "content": f"Write a long story about a crab who learns Rust, part {seed}."}],
        "max_tokens": 128, "temperature": 0.7, "seed": seed,
        "stream": True, "stream_options": {"include_usage": True},
    })
    connection.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
    response = connection.getresponse()
    if response.status != 200:
        raise SystemExit(f"twin serve answered {response.status}: {response.read()[:300]!r}")
    first, tokens = None, 0
    for line in response:
        line = line.decode().strip()
        if not line.startswith("data: {"):
            continue
        event = json.loads(line[6:])
        if first is None and event.get("choices") and event["choices"][0]["delta"].get("content"):
            first = time.monotonic()
        if event.get("usage"):
            tokens = event["usage"]["completion_tokens"]
    results[seed] = (first, time.monotonic(), tokens)


def generation_rate(port, concurrent):
    """Tokens/s after the first token, over ROUNDS rounds of `concurrent` answers at once."""
    decoded, seconds = 0, 0.0
    for round_ in range(ROUNDS):
        results = {}
        threads = [threading.Thread(target=answer, args=(port, round_ * 100 + i, results)) for i in range(concurrent)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if len(results) != concurrent or any(r[0] is None for r in results.values()):
            raise SystemExit("an answer failed or said nothing")
        first = min(r[0] for r in results.values())
        last = max(r[1] for r in results.values())
        decoded += sum(r[2] - 1 for r in results.values())
        seconds += last - first
    return decoded / seconds


def measure(model, port):
    log = open(os.path.join(WORK, f"twin-{port}.log"), "w")
    server = subprocess.Popen(
        [TWIN, "serve", "--engine", "embedded", "--model", model, "--parallel", "8",
         "--context-tokens", "2048", "--listen", f"127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as ready:
                    if ready.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"twin serve did not become ready: see {log.name}")
            time.sleep(0.5)
        generation_rate(port, 1)  # warm up
        return generation_rate(port, 1), generation_rate(port, 8)
    finally:
        server.terminate()
        server.wait()


def main():
    os.makedirs(WORK, exist_ok=True)
    print("| weights | file MiB | 1 answer tok/s | 8 answers tok/s (aggregate) | gain |")
    print("|---|---|---|---|---|")
    for port, name in enumerate(["Q4_1", "Q4_0", "Q8_0", "F16"], start=17801):
        model = SOURCE if name == "Q4_1" else requantise(name)
        single, batched = measure(model, port)
        size = os.path.getsize(model) / 2**20
        print(f"| {name} | {size:.0f} | {single:.1f} | {batched:.1f} | {batched / single:.2f}x |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
