"""The quickstart's base model: SmolLM2-135M-Instruct as a Q4_1 GGUF file (scripts/fetch-models),
which transformers dequantizes; a LoRA step trains on it and the adapter is written."""

import json
import os

from conftest import training_config, write_config

from twin_trainer.__main__ import main

GGUF = os.path.join(
    os.path.dirname(__file__), "..", "..", ".cache", "models", "SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf"
)


def test_a_gguf_base_model_trains(tmp_path, dataset_dir):
    assert os.path.isfile(GGUF), "run scripts/fetch-models first (scripts/test does)"
    config = training_config(dataset_dir, GGUF, tmp_path / "out", maxSteps=1)
    config["sft"].update({"maxSeqLength": 64, "perDeviceBatchSize": 1})
    config["dpo"]["enabled"] = False
    assert main(["--config", write_config(tmp_path / "config.json", config)]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["sft"]["steps"] == 1 and metrics["sft"]["trainLoss"] > 0
    assert metrics["dpo"] == {"skipped": "dpo.enabled is false"}
    summary = json.loads((tmp_path / "out.termination").read_text())
    assert summary["dpoSkipped"] == "dpo.enabled is false" and summary["dpoRewardAccuracy"] is None
    # SmolLM2: 30 layers, 7 projections each, A and B.
    assert metrics["adapter"]["gguf"] == {"architecture": "llama", "tensors": 30 * 7 * 2}
    tokenizer = json.loads((tmp_path / "out" / "tokenizer" / "tokenizer_config.json").read_text())
    assert tokenizer.get("chat_template") or (tmp_path / "out" / "tokenizer" / "chat_template.jinja").exists()
