"""SFT with LoRA or QLoRA on the instruct split, evaluated on its test split, then DPO from
the SFT adapter on the preference triples, with the settings of the configured preset."""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field

from .config import Config
from .data import TrainingData
from .errors import TrainerError
from .progress import Progress

TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class StageResult:
    """What one stage (SFT or DPO) measured."""

    losses: list[float] = field(default_factory=list)
    train_loss: float | None = None
    eval_loss: float | None = None
    reward_accuracy: float | None = None
    eval_samples: int = 0
    # Tokens/s once warmed up: over the steps after the first fifth (compilation, allocator
    # and kernel autotuning make the first steps slow).
    steady_tokens_per_second: float | None = None
    # The stage's own peak of GPU memory (none on CPU).
    peak_gpu_gib: float | None = None
    tokens: int = 0
    seconds: float = 0.0
    steps: int = 0


def speed_settings(config: Config, cuda: bool) -> dict:
    """Training arguments of the preset. `trl`: TRL's own defaults (activation recomputation,
    no fused kernels). `fast`: Liger's fused kernels (the logits never materialise) where a GPU
    runs them, and no activation recomputation, which Liger's memory savings pay for."""
    settings = {"bf16": False, "fp16": False}
    if cuda:
        import torch

        settings["bf16"] = torch.cuda.is_bf16_supported()
        settings["fp16"] = not settings["bf16"]
    if config.preset == "trl":
        return settings
    settings["gradient_checkpointing"] = config.sft.method == "qlora"
    settings["use_liger_kernel"] = cuda and importlib.util.find_spec("liger_kernel") is not None
    return settings


def _out_of_memory(stage: str, batch: int, length: int) -> TrainerError:
    return TrainerError(
        "OutOfMemory",
        f"{stage} ran out of GPU memory with {batch} samples per device of up to {length} tokens: "
        f"lower perDeviceBatchSize (raise gradientAccumulationSteps to keep the same batch), lower the "
        f"sequence length, or use sft.method: qlora",
    )


def _is_oom(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def _common(config: Config, output_dir: str, stage, cuda: bool) -> dict:
    return {
        "output_dir": output_dir,
        "per_device_train_batch_size": stage.per_device_batch_size,
        "per_device_eval_batch_size": stage.per_device_batch_size,
        "gradient_accumulation_steps": stage.gradient_accumulation_steps,
        "learning_rate": stage.learning_rate,
        "num_train_epochs": stage.epochs,
        "max_steps": config.max_steps or -1,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.03,
        "logging_steps": 1,
        "save_strategy": "no",
        "eval_strategy": "no",
        "report_to": "none",
        # One log line per step (losses, learning rate) instead of progress bars, for pod logs.
        "disable_tqdm": True,
        "seed": config.seed,
        "include_num_input_tokens_seen": "non_padding",
        "dataloader_pin_memory": cuda,
        **speed_settings(config, cuda),
    }


class StepClock:
    """Records when each optimiser step ended and how many tokens had been seen by then."""

    def __init__(self):
        from transformers import TrainerCallback

        clock = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                clock.marks.append((time.monotonic(), int(state.num_input_tokens_seen or 0)))

        self.marks: list[tuple[float, int]] = []
        self.callback = Callback()

    def steady_rate(self) -> float | None:
        if len(self.marks) < 3:
            return None
        first = max(1, len(self.marks) // 5)
        (t0, n0), (t1, n1) = self.marks[first - 1], self.marks[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None


def _reset_peak(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()


def _train(trainer, stage: str, batch: int, length: int, cuda: bool, progress: Progress) -> StageResult:
    """Runs a stage's training, timed and reported step by step, with its own memory peak;
    running out of GPU memory is explained with the batch size and length that did not fit."""
    clock = StepClock()
    trainer.add_callback(clock.callback)
    trainer.add_callback(progress.steps(stage.lower()))
    _reset_peak(cuda)
    started = time.monotonic()
    try:
        output = trainer.train()
    except Exception as error:
        if _is_oom(error):
            raise _out_of_memory(stage, batch, length) from None
        raise
    result = StageResult(
        losses=[entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
        train_loss=output.training_loss,
        tokens=int(trainer.state.num_input_tokens_seen or 0),
        seconds=time.monotonic() - started,
        steps=trainer.state.global_step,
        steady_tokens_per_second=clock.steady_rate(),
    )
    if cuda:
        import torch

        result.peak_gpu_gib = torch.cuda.max_memory_allocated() / 2**30
    return result


def sft(config: Config, data: TrainingData, model, tokenizer, workdir: str, cuda: bool, progress: Progress):
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    settings = config.sft
    args = SFTConfig(**_common(config, f"{workdir}/sft", settings, cuda), max_length=settings.max_seq_length)
    peft = LoraConfig(
        r=settings.lora_rank,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=TARGET_MODULES,
        task_type="CAUSAL_LM",
        bias="none",
    )
    test = data.sft_test
    if config.max_steps and test:
        # A quick check evaluates on as many samples as it trained on, not the whole split.
        test = test[: config.max_steps * settings.per_device_batch_size]
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(data.sft_train),
        eval_dataset=Dataset.from_list(test) if test else None,
        processing_class=tokenizer,
        peft_config=peft,
    )
    result = _train(trainer, "SFT", settings.per_device_batch_size, settings.max_seq_length, cuda, progress)
    if test:
        progress.report("sft-eval", samples=len(test))
        result.eval_loss = trainer.evaluate()["eval_loss"]
        result.eval_samples = len(test)
    return trainer.model, result


def dpo(config: Config, data: TrainingData, model, tokenizer, workdir: str, cuda: bool, progress: Progress):
    """DPO on the SFT model: its trained adapter keeps learning, and a frozen copy of it is the
    reference."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    settings = config.dpo
    args = DPOConfig(
        **_common(config, f"{workdir}/dpo", settings, cuda), beta=settings.beta, max_length=settings.max_length
    )
    trainer = DPOTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(data.preference), processing_class=tokenizer
    )
    result = _train(trainer, "DPO", settings.per_device_batch_size, settings.max_length, cuda, progress)
    accuracies = [entry["rewards/accuracies"] for entry in trainer.state.log_history if "rewards/accuracies" in entry]
    if accuracies:
        tail = accuracies[-max(1, len(accuracies) // 4):]
        result.reward_accuracy = sum(tail) / len(tail)
    model = trainer.model
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")
    return model, result
