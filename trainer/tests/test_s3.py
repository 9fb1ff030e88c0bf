"""The trainer against S3 (moto's emulator on 127.0.0.1, from .cache/moto, which
scripts/install-tools installs): the dataset read from s3://, the run published to s3://, and
the failures of a missing dataset and an unreachable store."""

import json
import os
import socket
import subprocess
import time
import urllib.request

import pytest
from conftest import training_config, write_config

from twin_trainer.__main__ import main

MOTO = os.path.join(os.path.dirname(__file__), "..", "..", ".cache", "moto")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    assert os.path.isfile(os.path.join(MOTO, "moto", "server.py")), "run scripts/install-tools first (scripts/test does)"
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    # moto runs in the machine's python with its own packages, beside the trainer's environment.
    server = subprocess.Popen(
        ["python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "PYTHONPATH": os.path.abspath(MOTO)}, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto did not start: see {log.name}")
            time.sleep(0.2)
    settings = {"AWS_ENDPOINT_URL_S3": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket="twins")
    yield client
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.terminate()
    server.wait()


def upload(client, folder, prefix):
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            client.upload_file(path, "twins", f"{prefix}/{os.path.relpath(path, folder)}")


def test_a_run_reads_and_publishes_on_s3(s3, tmp_path, dataset_dir, tiny_model_dir):
    upload(s3, dataset_dir, "twins/datasets/paul/r1")
    config = training_config("s3://twins/twins/datasets/paul/r1", tiny_model_dir, tmp_path / "unused", maxSteps=2)
    config["outputUri"] = "s3://twins/twins/models/paul-v1/g1-r1"
    assert main(["--config", write_config(tmp_path / "config.json", config)]) == 0
    listed = s3.list_objects_v2(Bucket="twins", Prefix="twins/models/paul-v1/g1-r1/")
    keys = sorted(item["Key"].split("g1-r1/", 1)[1] for item in listed["Contents"])
    for artifact in ["adapter.gguf", "adapter/adapter_config.json", "adapter/adapter_model.safetensors", "metrics.json", "tokenizer/tokenizer.json"]:
        assert artifact in keys, keys
    metrics = json.loads(s3.get_object(Bucket="twins", Key="twins/models/paul-v1/g1-r1/metrics.json")["Body"].read())
    assert metrics["samples"]["sftTrain"] == 12 and metrics["dpo"]["steps"] == 2
    summary = json.loads(open(config["terminationMessagePath"]).read())
    assert summary["adapterUri"] == "s3://twins/twins/models/paul-v1/g1-r1/adapter"


def test_a_missing_s3_dataset(s3, tmp_path, tiny_model_dir):
    config = training_config("s3://twins/twins/datasets/nobody/r9", tiny_model_dir, tmp_path / "unused")
    config["outputUri"] = "s3://twins/twins/models/nobody/g1-r9"
    assert main(["--config", write_config(tmp_path / "config.json", config)]) == 1
    summary = json.loads(open(config["terminationMessagePath"]).read())
    assert summary["reason"] == "DatasetMissing", summary
    assert "s3://twins/twins/datasets/nobody/r9" in summary["message"]


def test_an_unreachable_store(s3, tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    config = training_config("s3://twins/twins/datasets/paul/r1", tiny_model_dir, tmp_path / "unused")
    config["outputUri"] = "s3://twins/twins/models/paul-v1/g1-r1"
    assert main(["--config", write_config(tmp_path / "config.json", config)]) == 1
    summary = json.loads(open(config["terminationMessagePath"]).read())
    assert summary["reason"] == "StorageUnreachable", summary
