"""The trainer on a GPU in one run of a few minutes (`trainer/gpu-check.sh`): SFT then DPO for
some steps on a small model through the trainer's real code path, printing the loss going down;
then the trainer's `fast` preset against TRL's defaults on the same randomly initialised
1B-class model (Llama 3.2 1B's shape), printing tokens/s and peak memory for both.

Nothing is downloaded: the tokenizer is trained here and the models are random (speed does not
depend on the weights' values). Without a GPU it runs small on CPU, to check the code path."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from . import synthetic

SMALL = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True)
# Llama 3.2 1B: 1.24 billion parameters, a 128k vocabulary (what Liger's fused loss saves most on).
ONE_B = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
             num_key_value_heads=8, max_position_embeddings=4096, tie_word_embeddings=True, rope_theta=500000.0)
ONE_B_VOCAB = 128256


def train(work: str, name: str, model: str, dataset: str, preset: str, method: str, steps: int, dpo: bool, lr: float) -> dict:
    """One trainer run in a process of its own (so that each peak of memory is its own)."""
    out = os.path.join(work, "runs", name)
    config = {
        "run": name, "datasetUri": dataset, "datasetRevision": "r1", "baseModelUri": model, "outputUri": out,
        "preset": preset, "maxSteps": steps, "terminationMessagePath": os.path.join(work, f"{name}.result"),
        "sft": {"method": method, "epochs": 1, "learningRate": lr, "maxSeqLength": 2048, "perDeviceBatchSize": 8},
        "dpo": {"enabled": dpo, "learningRate": lr / 10, "beta": 0.1, "maxLength": 1024, "perDeviceBatchSize": 8},
    }
    path = os.path.join(work, f"{name}.json")
    with open(path, "w") as file:
        json.dump(config, file)
    environment = dict(os.environ, TWIN_TRAINER_SINGLE_PROCESS="1")
    code = subprocess.call([sys.executable, "-m", "twin_trainer", "--config", path], env=environment,
                           stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, f"{name}.log"), "w"))
    if code != 0:
        with open(config["terminationMessagePath"]) as file:
            raise SystemExit(f"{name} failed: {file.read()} (log: {work}/{name}.log)")
    with open(os.path.join(out, "metrics.json")) as file:
        return json.load(file)


def main() -> int:
    import torch

    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["1b", "small"], default="1b" if cuda else "small",
                        help="the model compared (default: 1b on a GPU, small on CPU)")
    parser.add_argument("--steps", type=int, default=30 if cuda else 4, help="optimiser steps per stage")
    parser.add_argument("--work", default=None, help="where models and runs go (default: a temporary folder)")
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="twin-gpu-check-")
    device = torch.cuda.get_device_name(0) if cuda else "CPU"
    print(f"# twin-trainer GPU check on {device} (work folder {work})", flush=True)

    # Answers of 200 to 1,500 words: sequences of about 256 to 2,048 tokens.
    conversations, triples = synthetic.random_conversations(320, 200, 1500)
    texts = [c["messages"][1]["content"] for c in conversations[:40]]
    tok = synthetic.tokenizer(texts, vocab_size=1000)
    dataset = synthetic.write_dataset(os.path.join(work, "dataset", "r1"), conversations[:300], conversations[300:], triples)

    print("\n## 1. SFT then DPO through the trainer's code path (small model, fast preset)", flush=True)
    small = synthetic.llama(os.path.join(work, "small"), tok, **SMALL)
    metrics = train(work, "path", small, dataset, "fast", "lora", max(args.steps, 10), True, 2e-3)
    for stage in ("sft", "dpo"):
        losses = metrics[stage]["losses"]
        print(f"{stage} loss by step: " + " ".join(f"{loss:.3f}" for loss in losses), flush=True)
        print(f"{stage} loss {'went down' if losses[-1] < losses[0] else 'DID NOT go down'}: {losses[0]:.3f} -> {losses[-1]:.3f}")
    print(f"DPO reward accuracy {metrics['dpo']['rewardAccuracy']}; settings {json.dumps(metrics['settings'])}")

    print(f"\n## 2. fast preset against TRL's defaults ({args.size} model, {args.steps} steps, batch 8)", flush=True)
    if args.size == "1b":
        model = synthetic.llama(os.path.join(work, "1b"), tok, vocab_size=ONE_B_VOCAB, dtype="bfloat16", **ONE_B)
    else:
        model = small
    rows = []
    methods = ["lora", "qlora"] if cuda else ["lora"]
    for method in methods:
        for preset in ("trl", "fast"):
            m = train(work, f"{method}-{preset}", model, dataset, preset, method, args.steps, method == "lora", 2e-4)
            rows.append((f"{'QLoRA' if method == 'qlora' else 'LoRA'} SFT", preset, m["sft"]))
            if method == "lora":
                rows.append(("LoRA DPO", preset, m["dpo"]))
    print("| stage | preset | tokens/s (after warm-up) | peak GPU GiB |")
    print("|---|---|---|---|")
    for stage, preset, m in rows:
        peak = m["peakGpuMemoryGiB"]
        print(f"| {stage} | {preset} | {m['steadyTokensPerSecond']} | {'-' if peak is None else f'{peak:.1f}'} |")
    by = {(stage, preset): m for stage, preset, m in rows}
    for stage in dict.fromkeys(stage for stage, _, _ in rows):
        trl, fast = by[(stage, "trl")], by[(stage, "fast")]
        speedup = fast["steadyTokensPerSecond"] / trl["steadyTokensPerSecond"]
        memory = "" if fast["peakGpuMemoryGiB"] is None else f", peak memory {fast['peakGpuMemoryGiB']:.1f} vs {trl['peakGpuMemoryGiB']:.1f} GiB"
        print(f"{stage}: fast is {speedup:.2f}x TRL's defaults{memory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
