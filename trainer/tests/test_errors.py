"""Every failure the trainer explains: its reason (for the TwinTrainingJob's status) and a
message that says what to do, in the termination summary, with nothing published."""

import json

import pytest
from conftest import training_config, write_config

from twin_trainer import config as configuration
from twin_trainer.__main__ import main
from twin_trainer.errors import TrainerError


def run_failing(tmp_path, config):
    assert main(["--config", write_config(tmp_path / "config.json", config)]) == 1
    summary = json.loads(open(config["terminationMessagePath"]).read())
    assert summary["status"] == "Failed"
    assert not (tmp_path / "out" / "metrics.json").exists(), "nothing is published after a failure"
    return summary


def test_a_missing_dataset(tmp_path, tiny_model_dir):
    summary = run_failing(tmp_path, training_config(tmp_path / "nowhere", tiny_model_dir, tmp_path / "out"))
    assert summary["reason"] == "DatasetMissing"
    assert "does not exist" in summary["message"]


def test_a_dataset_without_instruct_samples(tmp_path, tiny_model_dir):
    (tmp_path / "ds" / "instruct").mkdir(parents=True)
    (tmp_path / "ds" / "instruct" / "train.jsonl").write_text("\n")
    summary = run_failing(tmp_path, training_config(tmp_path / "ds", tiny_model_dir, tmp_path / "out"))
    assert summary["reason"] == "DatasetEmpty"


def test_a_malformed_sample_names_its_line(tmp_path, tiny_model_dir):
    (tmp_path / "ds" / "instruct").mkdir(parents=True)
    (tmp_path / "ds" / "instruct" / "train.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{oops\n')
    summary = run_failing(tmp_path, training_config(tmp_path / "ds", tiny_model_dir, tmp_path / "out"))
    assert summary["reason"] == "DatasetInvalid"
    assert "line 1" in summary["message"] and "assistant" in summary["message"]


def test_an_unreachable_base_model(tmp_path, dataset_dir):
    summary = run_failing(tmp_path, training_config(dataset_dir, tmp_path / "no-model", tmp_path / "out"))
    assert summary["reason"] == "ModelUnreachable"
    # The Hub, unreachable here (HF_HUB_OFFLINE, as in a cluster without egress).
    summary = run_failing(tmp_path, training_config(dataset_dir, "hf://no-such-org/no-such-model", tmp_path / "out"))
    assert summary["reason"] == "ModelUnreachable"
    assert "no-such-org/no-such-model" in summary["message"]


@pytest.mark.parametrize("token", [None, "hf_token"])
def test_a_gated_model(tmp_path, dataset_dir, monkeypatch, token):
    import httpx2 as httpx
    import transformers
    from huggingface_hub.errors import GatedRepoError

    url = "https://huggingface.co/meta-llama/Llama-3.1-8B/resolve/main/config.json"

    # What the Hub answers for a gated model (no network here).
    def gated(*args, **kwargs):
        response = httpx.Response(403, request=httpx.Request("GET", url))
        raise GatedRepoError("Access to model meta-llama/Llama-3.1-8B is restricted.", response=response)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", gated)
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    else:
        monkeypatch.delenv("HF_TOKEN", raising=False)
    summary = run_failing(tmp_path, training_config(dataset_dir, "hf://meta-llama/Llama-3.1-8B", tmp_path / "out"))
    assert summary["reason"] == "ModelGated"
    if token:
        assert "accept its licence" in summary["message"]
    else:
        assert "tokenSecretRef" in summary["message"]


def test_qlora_without_a_gpu(tmp_path, dataset_dir, tiny_model_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    config = training_config(dataset_dir, tiny_model_dir, tmp_path / "out")
    config["sft"]["method"] = "qlora"
    summary = run_failing(tmp_path, config)
    assert summary["reason"] == "NoGpu"
    assert "sft.method: lora" in summary["message"]


def test_out_of_memory_names_the_batch_and_length(tmp_path, dataset_dir, tiny_model_dir, monkeypatch):
    import torch
    import trl

    # A CPU cannot run out of GPU memory: the training step raises what CUDA raises.
    def exhausted(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trl.SFTTrainer, "train", exhausted)
    summary = run_failing(tmp_path, training_config(dataset_dir, tiny_model_dir, tmp_path / "out"))
    assert summary["reason"] == "OutOfMemory"
    assert "4 samples per device of up to 128 tokens" in summary["message"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"epochz": 3}, "unknown fields ['epochz']"),
        ({"sft": {"method": "full"}}, "sft.method must be lora or qlora"),
        ({"sft": {"loraRank": 1024}}, "largest rank vLLM serves"),
        ({"sft": {"learningRate": "fast"}}, "sft.learningRate must be a number"),
        ({"dpo": {"enabled": "maybe"}}, "dpo.enabled must be true or false"),
        ({"baseModelUri": ""}, "needs baseModelUri"),
        ({"preset": "turbo"}, "preset must be fast or trl"),
    ],
)
def test_invalid_configurations(change, message):
    document = {"datasetUri": "/data", "baseModelUri": "/model", **change}
    with pytest.raises(TrainerError) as raised:
        configuration.parse(document)
    assert raised.value.reason == "InvalidConfig"
    assert message in raised.value.message


def test_hyperparameter_strings_are_typed():
    config = configuration.parse({"datasetUri": "/d", "baseModelUri": "/m", "maxSteps": "5", "sft": {"epochs": "2", "loraRank": "16"}, "dpo": {"enabled": "false"}})
    assert config.max_steps == 5 and config.sft.epochs == 2.0 and config.sft.lora_rank == 16 and config.dpo.enabled is False
    assert config.vllm_max_lora_rank == 16
    assert configuration.parse({"datasetUri": "/d", "baseModelUri": "/m", "sft": {"loraRank": 12}}).vllm_max_lora_rank == 16


def test_the_operators_configuration_is_read_as_written():
    """trainer/tests/fixtures/operator-config.json is what the operator writes for the example
    TwinTrainingJob (a Rust test keeps it current)."""
    import os

    config = configuration.load(os.path.join(os.path.dirname(__file__), "fixtures", "operator-config.json"))
    assert config.run == "g1-rev3f9a"
    assert config.dataset_uri == "s3://twins-bucket/twins/datasets/paul/rev-3f9a"
    assert config.output_uri == "s3://twins-bucket/twins/models/paul-v1/g1-rev3f9a"
    assert config.sft.method == "qlora" and config.sft.lora_rank == 32 and config.sft.per_device_batch_size == 8
    assert config.dpo.enabled and config.dpo.beta == 0.5 and config.dpo.learning_rate == 2e-6
    assert config.termination_message_path == "/dev/termination-log"
    assert config.vllm_max_lora_rank == 32
