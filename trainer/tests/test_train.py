"""A whole run on CPU: LoRA SFT then DPO on the tiny model, and every artifact it publishes."""

import json

import numpy as np
import pytest
from conftest import training_config, write_config

from twin_trainer.__main__ import main
from twin_trainer.export import permute_rows


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, dataset_dir, tiny_model_dir):
    work = tmp_path_factory.mktemp("run")
    output = work / "models" / "paul-v1" / "run-1"
    config = training_config(dataset_dir, tiny_model_dir, output)
    code = main(["--config", write_config(work / "config.json", config)])
    return code, output, config


def test_the_run_succeeds_and_says_so_in_one_line(finished_run):
    code, output, config = finished_run
    assert code == 0
    with open(config["terminationMessagePath"]) as file:
        summary = json.loads(file.read())
    assert summary["status"] == "Succeeded"
    assert summary["adapterUri"] == f"{output}/adapter"
    assert summary["ggufAdapterUri"] == f"{output}/adapter.gguf"
    assert summary["datasetRevision"] == "r1"
    assert summary["vllmMaxLoraRank"] == 8
    assert summary["sftTrainLoss"] > 0 and summary["sftEvalLoss"] > 0
    assert 0 <= summary["dpoRewardAccuracy"] <= 1
    assert (summary["chatTemplate"], summary["chatTemplateWritten"]) == ("chat_template.jinja", 1)


def test_the_adapter_carries_the_chat_template_it_was_trained_with(finished_run):
    from transformers import AutoTokenizer

    _, output, _ = finished_run
    template = (output / "adapter" / "chat_template.jinja").read_text()
    tokenizer = AutoTokenizer.from_pretrained(output / "tokenizer")
    assert template == tokenizer.chat_template and "<|im_start|>" in template
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["adapter"]["chatTemplate"] == "chat_template.jinja"


def test_sft_loss_goes_down_and_dpo_runs(finished_run):
    _, output, _ = finished_run
    metrics = json.loads((output / "metrics.json").read_text())
    sft = metrics["sft"]
    assert sft["steps"] == 6 and len(sft["losses"]) == 6
    assert sft["lastLoss"] < sft["firstLoss"], sft["losses"]
    assert sft["tokens"] > 0 and sft["tokensPerSecond"] > 0 and sft["steadyTokensPerSecond"] > 0
    assert sft["peakGpuMemoryGiB"] is None, "no GPU here"
    assert sft["evalSamples"] == 2
    dpo = metrics["dpo"]
    assert "skipped" not in dpo and dpo["steps"] == 6
    assert dpo["rewardAccuracy"] is not None
    assert metrics["samples"] == {"sftTrain": 12, "sftTest": 2, "preference": 8}
    assert metrics["datasetRevision"] == "r1"
    assert metrics["peakMemoryGiB"] > 0 and metrics["peakMemoryOf"] == "process"
    assert metrics["settings"]["maxSeqLength"] == 128
    assert metrics["adapter"]["gguf"] == {"architecture": "llama", "tensors": 2 * 7 * 2}


def test_the_peft_adapter_loads_and_changes_the_model(finished_run, tiny_model_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, output, _ = finished_run
    config = json.loads((output / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16
    assert sorted(config["target_modules"]) == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    assert not (output / "adapter" / "ref").exists(), "DPO's frozen reference copy is not published"
    tokenizer = AutoTokenizer.from_pretrained(output / "tokenizer")
    assert tokenizer.chat_template
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    inputs = tokenizer("Ownership means", return_tensors="pt")
    with torch.no_grad():
        before = base(**inputs).logits
        tuned = PeftModel.from_pretrained(base, output / "adapter")
        after = tuned(**inputs).logits
    assert not torch.allclose(before, after, atol=1e-4)


def test_the_gguf_adapter_holds_the_same_matrices(finished_run):
    import gguf
    from safetensors.numpy import load_file

    _, output, _ = finished_run
    peft = load_file(output / "adapter" / "adapter_model.safetensors")
    reader = gguf.GGUFReader(output / "adapter.gguf")
    field = lambda name: reader.fields[name].contents()
    assert field("general.type") == "adapter"
    assert field("general.architecture") == "llama"
    assert field("adapter.type") == "lora"
    assert field("adapter.lora.alpha") == 16.0
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == len(peft) == 28
    projections = {"q_proj": ("attn_q", 4), "k_proj": ("attn_k", 2), "v_proj": ("attn_v", None), "o_proj": ("attn_output", None),
                   "gate_proj": ("ffn_gate", None), "up_proj": ("ffn_up", None), "down_proj": ("ffn_down", None)}
    for layer in range(2):
        for module, (name, heads) in projections.items():
            group = "self_attn" if module.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
            prefix = f"base_model.model.model.layers.{layer}.{group}.{module}"
            a = tensors[f"blk.{layer}.{name}.weight.lora_a"]
            b = tensors[f"blk.{layer}.{name}.weight.lora_b"]
            expected_a = peft[f"{prefix}.lora_A.weight"].astype(np.float32)
            expected_b = peft[f"{prefix}.lora_B.weight"].astype(np.float32)
            if heads:
                expected_b = permute_rows(expected_b, heads)
            # GGUF lists dimensions innermost first; the data is the same row-major matrix.
            assert list(a.shape) == list(reversed(expected_a.shape))
            np.testing.assert_allclose(np.asarray(a.data, dtype=np.float32).reshape(expected_a.shape), expected_a, rtol=1e-3, atol=1e-4)
            np.testing.assert_allclose(np.asarray(b.data, dtype=np.float32).reshape(expected_b.shape), expected_b, rtol=1e-3, atol=1e-4)
            assert np.abs(expected_b).max() > 0, "B starts at zero; training moved it"


def test_permuting_rows_interleaves_the_halves_of_each_head():
    rows = np.arange(8, dtype=np.float32).reshape(8, 1)
    # Two heads of four rows: [0 1 | 2 3] becomes [0 2 1 3] in each.
    assert permute_rows(rows, 2).ravel().tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_the_run_measures_its_adapter_against_the_base_on_held_out_and_control_text(finished_run):
    code, output, config = finished_run
    assert code == 0
    with open(output / "metrics.json") as file:
        evaluation = json.load(file)["evaluation"]
    assert evaluation["passages"] == 2, evaluation
    for part in ("authorAnswers", "authorText", "controlText"):
        nll = evaluation[part]["nll"]
        assert nll["twin"]["n"] == 2 and nll["twin"]["value"] > 0, (part, nll)
        # A trained adapter is not its base: the twin's figures differ from the baseline's.
        assert nll["difference"]["value"] != 0, (part, nll)
        assert nll["difference"]["low"] <= nll["difference"]["value"] <= nll["difference"]["high"]
    assert "authorSpecificReduction" in evaluation
    with open(config["terminationMessagePath"]) as file:
        summary = json.loads(file.read())
    assert summary["evaluationNllReduction"] == -evaluation["authorAnswers"]["nll"]["difference"]["value"]
    assert summary["evaluationAuthorSpecificNllReduction"] == evaluation["authorSpecificReduction"]["value"]


def test_the_control_text_ships_with_the_trainer_and_is_cut_into_passages():
    from twin_trainer import evaluate

    passages = evaluate.control_passages(evaluate.read_control("builtin:opticks"))
    assert len(passages) >= 25
    assert all(len(p.split()) >= evaluate.CONTROL_PASSAGE_WORDS // 2 for p in passages)
    # One sample per passage, whatever the file's order.
    sample = lambda answer: {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": answer}]}
    chosen = evaluate.held_out([sample("b"), sample("a"), sample("b")], 0)
    assert sorted(s["messages"][-1]["content"] for s in chosen) == ["a", "b"]
    assert evaluate.held_out([sample("b"), sample("a")], 1) == evaluate.held_out([sample("a"), sample("b")], 1)


def test_the_run_answers_held_out_instructions_with_and_without_its_adapter(finished_run):
    _, output, config = finished_run
    with open(output / "metrics.json") as file:
        metrics = json.load(file)
    answers = metrics["evaluation"]["answers"]
    # The test split has two passages: both asked, greedy, each answer scored against the
    # author's profile.
    assert answers["questions"] == 2 and answers["decoding"] == "greedy"
    for item in answers["items"]:
        assert item["instruction"].startswith("Write the section about")
        assert isinstance(item["twin"], str) and isinstance(item["baseline"], str)
        assert all(0 <= likeness <= 1 for likeness in item["likeness"])
    win_rate = answers["winRate"]
    assert 0 <= win_rate["low"] <= win_rate["value"] <= win_rate["high"] <= 1
    with open(config["terminationMessagePath"]) as file:
        summary = json.loads(file.read())
    assert summary["evaluationWinRate"] == win_rate["value"]
    # What the result line carries is kept with the metrics, for a run found finished later.
    assert metrics["headline"]["evaluationWinRate"] == win_rate["value"]
    assert "evaluationNotMeasured" not in summary


def test_the_authors_profile_prefers_the_authors_own_words():
    from twin_trainer import evaluate

    from conftest import TOPICS

    profile = evaluate.Profile([answer for _, answer in TOPICS[:6]])
    own = profile.likeness(TOPICS[0][1])
    other = profile.likeness("The refraction of light through a prism separates its colours, as Newton observed.")
    assert 0 < other < own <= 1 + 1e-9
    assert profile.likeness("") == 0


def test_a_run_is_measured_against_the_serving_adapter_when_asked(finished_run, dataset_dir, tiny_model_dir, tmp_path):
    _, serving_output, _ = finished_run
    output = tmp_path / "models" / "paul-v1" / "run-2"
    evaluation = {"servingAdapterUri": str(serving_output / "adapter"), "questions": 0}
    config = training_config(dataset_dir, tiny_model_dir, output, evaluation=evaluation, dpo={"enabled": False})
    assert main(["--config", write_config(tmp_path / "config.json", config)]) == 0
    with open(output / "metrics.json") as file:
        measured = json.load(file)["evaluation"]
    serving = measured["serving"]
    assert serving["adapterUri"] == str(serving_output / "adapter")
    assert serving["nll"]["twin"]["n"] == 2
    reduction = serving["reduction"]["value"]
    assert reduction == pytest.approx(serving["nll"]["baseline"]["value"] - serving["nll"]["twin"]["value"])
    assert reduction != 0, "two different adapters score differently"
    with open(config["terminationMessagePath"]) as file:
        summary = json.loads(file.read())
    assert summary["evaluationServingNllReduction"] == reduction
    # Generation was switched off: the result line says so, and carries no win rate.
    assert "evaluationWinRate" not in summary
    assert summary["evaluationNotMeasured"] == "answers: evaluation.questions is 0"
    # The published adapter is this run's only: the serving one was loaded beside it, then dropped.
    with open(output / "adapter" / "adapter_config.json") as file:
        assert json.load(file)["r"] == 8
    assert sorted(p.name for p in (output / "adapter").iterdir() if p.is_dir()) == []


def test_a_serving_adapter_that_is_not_one_fails_the_run_with_what_is_wrong(dataset_dir, tiny_model_dir, tmp_path):
    output = tmp_path / "run"
    (tmp_path / "empty").mkdir()
    evaluation = {"servingAdapterUri": str(tmp_path / "empty"), "questions": 0}
    config = training_config(dataset_dir, tiny_model_dir, output, evaluation=evaluation, dpo={"enabled": False}, maxSteps=1)
    assert main(["--config", write_config(tmp_path / "config.json", config)]) != 0
    with open(config["terminationMessagePath"]) as file:
        result = json.loads(file.read())
    assert (result["status"], result["reason"]) == ("Failed", "ServingAdapterMissing")
    assert str(tmp_path / "empty") in result["message"]
    assert not (output / "metrics.json").exists(), "nothing is published for a run that failed"
