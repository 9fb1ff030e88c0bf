"""The trainer's configuration: one JSON object, written by the operator (camelCase, the
TwinTrainingJob's own field names), read from a file or from SageMaker's hyperparameters."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import config_error

# The LoRA ranks vLLM accepts for --max-lora-rank; an adapter of rank r needs the smallest
# one at least r.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


@dataclass
class SftSettings:
    method: str = "lora"
    epochs: float = 3
    learning_rate: float = 3.0e-4
    lora_rank: int = 32
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    max_seq_length: int = 2048
    per_device_batch_size: int = 8
    gradient_accumulation_steps: int = 1


@dataclass
class DpoSettings:
    enabled: bool = True
    beta: float = 0.5
    epochs: float = 1
    learning_rate: float = 2.0e-6
    max_length: int = 1024
    per_device_batch_size: int = 8
    gradient_accumulation_steps: int = 1


@dataclass
class EvaluationSettings:
    # Whether the run measures its adapter against the base model after training.
    enabled: bool = True
    # Held-out passages scored (0: the whole test split); unset: 32 on a GPU, 8 on a CPU, where
    # each forward pass costs a second or more.
    passages: int | None = None
    # Tokens of one scored text, its prompt included.
    max_tokens: int = 768
    # The control text: `builtin:opticks` (shipped with the trainer) or a local file.
    control: str = "builtin:opticks"
    # Test instructions the adapter and the base model answer (greedy) for the author-likeness
    # win rate; 0 skips generation.
    questions: int = 4
    # Longest answer generated, in tokens.
    answer_tokens: int = 128
    # The adapter served now (a PEFT folder: local, file:// or s3://), which the gate asks this
    # run to beat: its NLL on the same held-out answers is measured too.
    serving_adapter_uri: str | None = None


@dataclass
class Config:
    """What one run trains, on what, and where its artifacts go."""

    # The dataset revision's folder: a local path, file://, or s3://.
    dataset_uri: str
    # The base model: hf://org/name[@revision][/file.gguf], s3://, a local folder or a GGUF file.
    base_model_uri: str
    # Where the run's artifacts go (a local path, file:// or s3://); unset under SageMaker,
    # which uploads /opt/ml/model itself.
    output_uri: str | None = None
    # The run's name, recorded in metrics.json.
    run: str = "run"
    # The dataset revision trained on, recorded for lineage.
    dataset_revision: str | None = None
    sft: SftSettings = field(default_factory=SftSettings)
    dpo: DpoSettings = field(default_factory=DpoSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    # `fast` (Liger kernels, no activation recomputation, bf16 on a GPU) or `trl` (TRL's own
    # defaults, for comparison).
    preset: str = "fast"
    # Stops each stage after this many optimiser steps (quick checks); unset: whole epochs.
    max_steps: int | None = None
    seed: int = 42
    # The environment variable holding the Hugging Face token (for gated models).
    hub_token_env: str = "HF_TOKEN"
    # Where the one-line JSON result goes (Kubernetes reads it into the pod's status).
    termination_message_path: str = "/dev/termination-log"
    # Where the run's progress is appended as JSON lines (progress.py); unset: nowhere.
    progress_path: str | None = None

    @property
    def vllm_max_lora_rank(self) -> int:
        return next(r for r in VLLM_LORA_RANKS if r >= self.sft.lora_rank)


def _settings(cls, value: Any, where: str):
    if value is None:
        return cls()
    if not isinstance(value, dict):
        raise config_error(f"{where} must be an object, not {type(value).__name__}")
    fields = {_camel(f.name): f for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise config_error(f"{where} has unknown fields {unknown}; known: {sorted(fields)}")
    values = {}
    for key, raw in value.items():
        f = fields[key]
        values[f.name] = _typed(raw, f.type, f"{where}.{key}")
    return cls(**values)


def _typed(raw: Any, kind: Any, where: str):
    kind = str(kind)
    if raw is None and "None" in kind:
        return None
    if kind.startswith("bool"):
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise config_error(f"{where} must be true or false, not {raw!r}")
    if kind.startswith("int"):
        if isinstance(raw, bool) or not isinstance(raw, (int, str)) or not re.fullmatch(r"-?\d+", str(raw)):
            raise config_error(f"{where} must be a whole number, not {raw!r}")
        return int(raw)
    if kind.startswith("float"):
        try:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        except (TypeError, ValueError):
            raise config_error(f"{where} must be a number, not {raw!r}") from None
    if kind.startswith("str"):
        if not isinstance(raw, str):
            raise config_error(f"{where} must be a string, not {raw!r}")
        return raw
    return raw


def parse(document: dict[str, Any]) -> Config:
    """The configuration in `document`, checked: unknown fields and bad values are errors."""
    if not isinstance(document, dict):
        raise config_error("the configuration must be a JSON object")
    document = dict(document)
    nested = {
        "sft": _settings(SftSettings, document.pop("sft", None), "sft"),
        "dpo": _settings(DpoSettings, document.pop("dpo", None), "dpo"),
        "evaluation": _settings(EvaluationSettings, document.pop("evaluation", None), "evaluation"),
    }
    top = {_camel(f.name): f for f in dataclasses.fields(Config) if f.name not in nested}
    unknown = sorted(set(document) - set(top))
    if unknown:
        raise config_error(f"the configuration has unknown fields {unknown}; known: {sorted(top) + ['dpo', 'evaluation', 'sft']}")
    for required in ("datasetUri", "baseModelUri"):
        if not document.get(required):
            raise config_error(f"the configuration needs {required}")
    values = {top[key].name: _typed(raw, top[key].type, key) for key, raw in document.items()}
    config = Config(**values, **nested)
    _check(config)
    return config


def _check(config: Config) -> None:
    sft, dpo = config.sft, config.dpo
    if sft.method not in ("lora", "qlora"):
        raise config_error(f"sft.method must be lora or qlora, not {sft.method!r}")
    if config.preset not in ("fast", "trl"):
        raise config_error(f"preset must be fast or trl, not {config.preset!r}")
    positive = {
        "sft.epochs": sft.epochs, "sft.learningRate": sft.learning_rate, "sft.loraRank": sft.lora_rank,
        "sft.loraAlpha": sft.lora_alpha, "sft.maxSeqLength": sft.max_seq_length,
        "sft.perDeviceBatchSize": sft.per_device_batch_size,
        "sft.gradientAccumulationSteps": sft.gradient_accumulation_steps,
        "dpo.epochs": dpo.epochs, "dpo.learningRate": dpo.learning_rate, "dpo.maxLength": dpo.max_length,
        "dpo.perDeviceBatchSize": dpo.per_device_batch_size,
        "dpo.gradientAccumulationSteps": dpo.gradient_accumulation_steps,
    }
    for name, value in positive.items():
        if value <= 0:
            raise config_error(f"{name} must be above 0, not {value}")
    if sft.lora_rank > VLLM_LORA_RANKS[-1]:
        raise config_error(f"sft.loraRank {sft.lora_rank} is above {VLLM_LORA_RANKS[-1]}, the largest rank vLLM serves")
    if not 0 <= sft.lora_dropout < 1:
        raise config_error(f"sft.loraDropout must be in [0, 1), not {sft.lora_dropout}")
    if dpo.beta < 0:
        raise config_error(f"dpo.beta must not be negative, not {dpo.beta}")
    evaluation = config.evaluation
    if (evaluation.passages or 0) < 0 or evaluation.max_tokens < 16:
        raise config_error("evaluation.passages must be 0 or more and evaluation.maxTokens at least 16")
    if evaluation.questions < 0 or evaluation.answer_tokens < 8:
        raise config_error("evaluation.questions must be 0 or more and evaluation.answerTokens at least 8")
    if config.max_steps is not None and config.max_steps <= 0:
        raise config_error(f"maxSteps must be above 0, not {config.max_steps}")


def load(path: str) -> Config:
    try:
        with open(path, encoding="utf-8") as file:
            document = json.load(file)
    except FileNotFoundError:
        raise config_error(f"the configuration file {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise config_error(f"the configuration file {path} is not JSON: {error}") from None
    return parse(document)


def from_hyperparameters(path: str) -> Config:
    """SageMaker's hyperparameters.json: every value is a string; the operator passes the whole
    configuration as one, `config`."""
    try:
        with open(path, encoding="utf-8") as file:
            hyperparameters = json.load(file)
    except (OSError, json.JSONDecodeError) as error:
        raise config_error(f"cannot read SageMaker's hyperparameters {path}: {error}") from None
    raw = hyperparameters.get("config")
    if raw is None:
        raise config_error(f"{path} has no `config` hyperparameter (the trainer's JSON configuration)")
    try:
        document = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as error:
        raise config_error(f"the `config` hyperparameter is not JSON: {error}") from None
    return parse(document)
