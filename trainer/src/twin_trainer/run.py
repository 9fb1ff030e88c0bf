"""One training run: the dataset and base model in, SFT then DPO, and the artifacts of DESIGN §4
out (adapter/, adapter.gguf, tokenizer/, metrics.json), published together."""

from __future__ import annotations

import json
import os
import resource
import shutil
import tempfile
import time

from . import data as training_data
from . import evaluate, export, model as base_model, storage, train
from .config import Config
from .errors import TrainerError
from .progress import Progress


def _dataset_folder(config: Config, workdir: str) -> str:
    if storage.is_s3(config.dataset_uri):
        return storage.download(config.dataset_uri, os.path.join(workdir, "dataset"), "dataset")
    path = storage.local_path(config.dataset_uri)
    if path is None:
        raise TrainerError("InvalidConfig", f"datasetUri {config.dataset_uri} must be s3://, file:// or a local path")
    return path


# The file in the adapter folder holding its chat template (the operator's CHAT_TEMPLATE_FILE).
CHAT_TEMPLATE_FILE = "chat_template.jinja"


def _chat_template(tokenizer) -> str:
    """The template the tokenizer renders conversations with (the default one of several)."""
    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default") or next(iter(template.values()))
    return template


def _stage(result: train.StageResult) -> dict:
    return {
        "trainLoss": result.train_loss,
        "firstLoss": result.losses[0] if result.losses else None,
        "lastLoss": result.losses[-1] if result.losses else None,
        "losses": result.losses,
        "evalLoss": result.eval_loss,
        "evalSamples": result.eval_samples,
        "steps": result.steps,
        "tokens": result.tokens,
        "seconds": round(result.seconds, 3),
        "tokensPerSecond": round(result.tokens / result.seconds, 1) if result.seconds else None,
        "steadyTokensPerSecond": round(result.steady_tokens_per_second, 1) if result.steady_tokens_per_second else None,
        "peakGpuMemoryGiB": round(result.peak_gpu_gib, 3) if result.peak_gpu_gib is not None else None,
    }


def _peak_memory(stages: list[train.StageResult]) -> dict:
    """The run's peak: the largest of its stages' GPU peaks (each stage resets the counter), or
    the process's largest resident size on CPU."""
    gpu = [stage.peak_gpu_gib for stage in stages if stage.peak_gpu_gib is not None]
    if gpu:
        return {"peakMemoryGiB": round(max(gpu), 3), "peakMemoryOf": "gpu"}
    # Linux reports the largest resident size in KiB.
    return {"peakMemoryGiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3), "peakMemoryOf": "process"}


def run(config: Config, model_dir: str | None = None, primary: bool = True) -> dict:
    """Trains and publishes; returns the termination summary."""
    import torch
    from safetensors.torch import load_file

    if model_dir is None and not config.output_uri:
        raise TrainerError("InvalidConfig", "the configuration needs outputUri: where the adapter is published")
    started = time.monotonic()
    cuda = torch.cuda.is_available()
    workdir = tempfile.mkdtemp(prefix="twin-trainer-")
    progress = Progress(config.progress_path if primary else None)
    try:
        progress.report("loading")
        folder = _dataset_folder(config, workdir)
        data = training_data.load(folder, need_preference=config.dpo.enabled)
        model, tokenizer, source = base_model.load(config.base_model_uri, config.sft.method, config.hub_token_env, workdir)
        model, sft = train.sft(config, data, model, tokenizer, workdir, cuda, progress)
        stages = [sft]
        dpo_metrics: dict
        if not config.dpo.enabled:
            dpo_metrics = {"skipped": "dpo.enabled is false"}
        elif not data.preference:
            dpo_metrics = {"skipped": "the dataset has no preference triples (preference/train.jsonl)"}
        else:
            model, dpo = train.dpo(config, data, model, tokenizer, workdir, cuda, progress)
            dpo_metrics = {**_stage(dpo), "rewardAccuracy": dpo.reward_accuracy}
            stages.append(dpo)
        if not primary:
            return {"status": "Succeeded"}
        # The adapter against its base on the held-out passages and the control text.
        evaluation = evaluate.after_training(config, model, tokenizer, data.sft_test, data.sft_train, workdir, progress)
        figures = evaluate.headline(evaluation)
        progress.report("publishing")
        out = model_dir or os.path.join(workdir, "out")
        os.makedirs(out, exist_ok=True)
        adapter_dir = os.path.join(out, "adapter")
        model.save_pretrained(adapter_dir, selected_adapters=["default"])
        tokenizer.save_pretrained(os.path.join(out, "tokenizer"))
        # The template the samples were rendered with, beside the weights, so that every engine
        # serves the twin with it (vLLM is given it with --chat-template).
        template = _chat_template(tokenizer)
        with open(os.path.join(adapter_dir, CHAT_TEMPLATE_FILE), "w", encoding="utf-8") as file:
            file.write(template)
        tensors = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
        gguf = export.write_gguf_adapter(
            tensors, model.get_base_model().config, config.sft.lora_alpha, os.path.join(out, "adapter.gguf")
        )
        metrics = {
            "run": config.run,
            "datasetUri": config.dataset_uri,
            "datasetRevision": config.dataset_revision,
            "baseModel": config.base_model_uri,
            "method": config.sft.method,
            "preset": config.preset,
            "device": torch.cuda.get_device_name(0) if cuda else "cpu",
            "gpus": int(os.environ.get("WORLD_SIZE", "1")) if cuda else 0,
            "samples": {"sftTrain": len(data.sft_train), "sftTest": len(data.sft_test), "preference": len(data.preference)},
            "sft": _stage(sft),
            "dpo": dpo_metrics,
            "evaluation": evaluation,
            # The result line's figures, so that a run found finished is judged as it was.
            "headline": figures,
            "settings": {
                **train.speed_settings(config, cuda),
                "sftBatchSize": config.sft.per_device_batch_size,
                "sftGradientAccumulationSteps": config.sft.gradient_accumulation_steps,
                "maxSeqLength": config.sft.max_seq_length,
                "dpoMaxLength": config.dpo.max_length,
                "maxSteps": config.max_steps,
            },
            "adapter": {
                "rank": config.sft.lora_rank,
                "alpha": config.sft.lora_alpha,
                "targetModules": train.TARGET_MODULES,
                "vllmMaxLoraRank": config.vllm_max_lora_rank,
                "gguf": gguf,
                "chatTemplate": CHAT_TEMPLATE_FILE,
                "chatTemplateSource": "chatml (the base model has none)" if template == base_model.CHATML else "the base model's",
            },
            **_peak_memory(stages),
            "durationSeconds": round(time.monotonic() - started, 3),
        }
        with open(os.path.join(out, "metrics.json"), "w", encoding="utf-8") as file:
            json.dump(metrics, file, indent=2)
        if config.output_uri:
            storage.publish(out, config.output_uri)
        adapter_uri = config.output_uri or out
        return {
            "status": "Succeeded",
            "adapterUri": f"{adapter_uri.rstrip('/')}/adapter",
            "ggufAdapterUri": f"{adapter_uri.rstrip('/')}/adapter.gguf",
            "datasetRevision": config.dataset_revision,
            "sftTrainLoss": sft.train_loss,
            "sftEvalLoss": sft.eval_loss,
            "dpoRewardAccuracy": dpo_metrics.get("rewardAccuracy"),
            "dpoSkipped": dpo_metrics.get("skipped"),
            "vllmMaxLoraRank": config.vllm_max_lora_rank,
            "chatTemplate": CHAT_TEMPLATE_FILE,
            # The same, as a number: SageMaker's metric definitions read numbers only.
            "chatTemplateWritten": 1,
            **figures,
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
