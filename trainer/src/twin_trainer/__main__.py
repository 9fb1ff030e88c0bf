"""`twin-trainer --config FILE` (or `python -m twin_trainer`): one run from the configuration to
the published adapter, with a one-line JSON result in the termination message. Under
SageMaker (no --config, /opt/ml/input/config/hyperparameters.json present) it reads the
dataset channel and writes to /opt/ml/model, and a failure to /opt/ml/output/failure."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import traceback

from . import config as configuration
from .errors import TrainerError

SAGEMAKER_ROOT = "/opt/ml"
# The channels of a SageMaker run that hold one split of the dataset revision each.
SPLIT_CHANNELS = ("instruct", "preference")


class Layout:
    """Where this run reads its configuration and writes its results."""

    def __init__(self, config_path: str | None, sagemaker_root: str):
        hyperparameters = os.path.join(sagemaker_root, "input", "config", "hyperparameters.json")
        self.sagemaker = config_path is None and os.path.isfile(hyperparameters)
        self.root = sagemaker_root
        self.config_path = hyperparameters if self.sagemaker else config_path

    def load(self) -> configuration.Config:
        if self.config_path is None:
            raise TrainerError("InvalidConfig", "give --config FILE (or run as a SageMaker training container)")
        if not self.sagemaker:
            return configuration.load(self.config_path)
        config = configuration.from_hyperparameters(self.config_path)
        dataset = self.dataset_from_channels()
        if dataset is not None:
            config.dataset_uri = dataset
        return config

    def dataset_from_channels(self) -> str | None:
        """The dataset revision as SageMaker downloaded it: one `dataset` channel holding the
        whole revision, or (what the operator starts) one channel per split, `instruct` and
        optionally `preference`, so that the revision's documents and embeddings, which training
        does not read, are not downloaded. Per-split channels are joined into one folder of
        links in the revision's layout."""
        data = os.path.join(self.root, "input", "data")
        whole = os.path.join(data, "dataset")
        if os.path.isdir(whole):
            return whole
        splits = [s for s in SPLIT_CHANNELS if os.path.isdir(os.path.join(data, s))]
        if not splits:
            return None
        joined = tempfile.mkdtemp(prefix="twin-dataset-")
        for split in splits:
            os.symlink(os.path.join(data, split), os.path.join(joined, split))
        return joined

    def model_dir(self) -> str | None:
        return os.path.join(self.root, "model") if self.sagemaker else None

    def report(self, config: configuration.Config | None, result: dict) -> None:
        """The one-line result: the termination message (Kubernetes), and under SageMaker a
        failure's message in /opt/ml/output/failure."""
        line = json.dumps(result, separators=(",", ":"), sort_keys=True)
        print(line, flush=True)
        if self.sagemaker:
            output = os.path.join(self.root, "output")
            os.makedirs(output, exist_ok=True)
            if result["status"] == "Failed":
                with open(os.path.join(output, "failure"), "w", encoding="utf-8") as file:
                    file.write(f"{result['reason']}: {result['message']}"[:1024])
            return
        path = config.termination_message_path if config else "/dev/termination-log"
        try:
            with open(path, "w", encoding="utf-8") as file:
                file.write(line[:4096])
        except OSError:
            pass  # outside a pod there is none; the line is on stdout


def _data_parallel(argv: list[str]) -> int | None:
    """With several GPUs and not already one of torchrun's workers: this command again, once per
    GPU, data-parallel (never one GPU working while the rest idle)."""
    if "LOCAL_RANK" in os.environ or os.environ.get("TWIN_TRAINER_SINGLE_PROCESS"):
        return None
    try:
        import torch
    except ImportError:
        return None
    gpus = torch.cuda.device_count()
    if gpus < 2:
        return None
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", "-m", "twin_trainer", *argv]
    return subprocess.call(command)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # SageMaker starts a training container as `<entrypoint> train`.
    if argv[:1] == ["train"]:
        argv = argv[1:]
    parser = argparse.ArgumentParser(prog="twin-trainer", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="the JSON configuration (trainer/README.md)")
    parser.add_argument(
        "--sagemaker-root",
        default=os.environ.get("TWIN_TRAINER_SAGEMAKER_ROOT", SAGEMAKER_ROOT),
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args(argv)
    parallel = _data_parallel(argv)
    if parallel is not None:
        return parallel
    layout = Layout(args.config, args.sagemaker_root)
    primary = int(os.environ.get("RANK", "0")) == 0
    config = None
    try:
        config = layout.load()
        from .run import run

        result = run(config, layout.model_dir(), primary)
    except TrainerError as error:
        result = {"status": "Failed", "reason": error.reason, "message": error.message}
    except Exception as error:  # anything unforeseen still ends with a reason in the status
        traceback.print_exc()
        result = {"status": "Failed", "reason": "TrainerCrashed", "message": f"{type(error).__name__}: {error}"}
    if primary:
        layout.report(config, result)
    return 0 if result["status"] == "Succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
