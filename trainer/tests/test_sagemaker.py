"""The same trainer as a SageMaker training container: the configuration from
hyperparameters.json, the dataset from its channel, the artifacts to /opt/ml/model, a failure's
reason to /opt/ml/output/failure."""

import json
import shutil

from conftest import training_config

from twin_trainer.__main__ import main


def sagemaker_root(tmp_path, config, dataset_dir=None, channels=("dataset",)):
    """SageMaker's layout: the hyperparameters, and the dataset in one `dataset` channel or in
    one channel per split (what the operator starts)."""
    root = tmp_path / "opt-ml"
    (root / "input" / "config").mkdir(parents=True)
    # SageMaker passes every hyperparameter as a string.
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"config": json.dumps(config)}))
    if dataset_dir is not None:
        for channel in channels:
            source = dataset_dir if channel == "dataset" else dataset_dir / channel
            shutil.copytree(source, root / "input" / "data" / channel)
    return root


def test_a_run_reads_the_channel_and_writes_the_model_folder(tmp_path, dataset_dir, tiny_model_dir):
    config = training_config("s3://bucket/twins/datasets/paul/r1", tiny_model_dir, tmp_path / "unused", maxSteps=2)
    del config["outputUri"]
    root = sagemaker_root(tmp_path, config, dataset_dir)
    assert main(["--sagemaker-root", str(root)]) == 0
    model = root / "model"
    for artifact in ["adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter.gguf", "tokenizer/tokenizer.json", "metrics.json"]:
        assert (model / artifact).is_file(), artifact
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["sft"]["steps"] == 2 and metrics["dpo"]["steps"] == 2
    assert metrics["datasetUri"] == str(root / "input" / "data" / "dataset")
    assert not (root / "output" / "failure").exists()


def test_a_run_reads_one_channel_per_split(tmp_path, dataset_dir, tiny_model_dir):
    config = training_config("s3://bucket/twins/datasets/paul/r1", tiny_model_dir, tmp_path / "unused", maxSteps=2)
    del config["outputUri"]
    root = sagemaker_root(tmp_path, config, dataset_dir, channels=("instruct", "preference"))
    assert main(["--sagemaker-root", str(root)]) == 0
    metrics = json.loads((root / "model" / "metrics.json").read_text())
    # Both splits were read from their channels: SFT evaluated on instruct/test.jsonl, DPO ran.
    assert metrics["sft"]["steps"] == 2 and metrics["sft"]["evalLoss"] is not None
    assert metrics["dpo"]["steps"] == 2


def test_a_failure_is_written_where_sagemaker_reads_it(tmp_path, tiny_model_dir):
    (tmp_path / "empty" / "instruct").mkdir(parents=True)
    (tmp_path / "empty" / "instruct" / "train.jsonl").write_text("")
    config = training_config("s3://bucket/unused", tiny_model_dir, tmp_path / "unused")
    root = sagemaker_root(tmp_path, config, tmp_path / "empty")
    assert main(["--sagemaker-root", str(root)]) == 1
    failure = (root / "output" / "failure").read_text()
    assert failure.startswith("DatasetEmpty: ") and "train.jsonl has no samples" in failure


def test_hyperparameters_without_the_configuration_are_refused(tmp_path):
    root = tmp_path / "opt-ml"
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"epochs": "3"}))
    assert main(["--sagemaker-root", str(root)]) == 1
    assert "no `config` hyperparameter" in (root / "output" / "failure").read_text()
