"""The base model and its tokenizer, from wherever the TwinTrainingJob names: the Hugging Face
Hub (`hf://org/name[@revision][/file.gguf]`, with the token from the environment), S3, a local
folder, or a GGUF file (transformers dequantizes it)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from . import storage
from .errors import TrainerError

# The chat template given to a base model that has none (ChatML, which SmolLM2, Qwen and the
# embedded engine's fallback use), so that conversational samples can be rendered.
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class Source:
    """What `from_pretrained` is given."""

    name_or_path: str
    gguf_file: str | None = None
    revision: str | None = None
    from_hub: bool = False


def resolve(uri: str, workdir: str) -> Source:
    if uri.startswith("hf://"):
        rest = uri[len("hf://"):]
        parts = rest.split("/")
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise TrainerError("InvalidConfig", f"{uri} must be hf://<org>/<name>[@revision][/file.gguf]")
        repo, revision = "/".join(parts[:2]), None
        if "@" in repo:
            repo, revision = repo.split("@", 1)
        file = "/".join(parts[2:]) or None
        if file and not file.endswith(".gguf"):
            raise TrainerError("InvalidConfig", f"{uri}: a file inside a Hub repository must be a .gguf file")
        return Source(repo, gguf_file=file, revision=revision, from_hub=True)
    if storage.is_s3(uri):
        target = storage.download(uri, os.path.join(workdir, "base-model"), "base model")
        ggufs = [name for name in os.listdir(target) if name.endswith(".gguf")]
        if not os.path.isfile(os.path.join(target, "config.json")) and len(ggufs) == 1:
            return Source(target, gguf_file=ggufs[0])
        return Source(target)
    path = storage.local_path(uri)
    if path is None:
        raise TrainerError("InvalidConfig", f"baseModelUri {uri} must be hf://, s3://, file:// or a local path")
    if os.path.isfile(path) and path.endswith(".gguf"):
        return Source(os.path.dirname(os.path.abspath(path)), gguf_file=os.path.basename(path))
    if os.path.isdir(path):
        return Source(path)
    raise TrainerError("ModelUnreachable", f"the base model {uri} does not exist (a folder with config.json, or a .gguf file)")


def _hub_error(error: Exception, source: Source, token: str | None, token_env: str) -> TrainerError:
    from huggingface_hub import errors as hub

    name = source.name_or_path
    if isinstance(error, hub.GatedRepoError) or "gated" in str(error).lower():
        if token:
            return TrainerError("ModelGated", f"{name} is gated and the token in {token_env} has no access: accept its licence on the Hub with that account")
        return TrainerError("ModelGated", f"{name} is gated: give a Hugging Face token (baseModel.tokenSecretRef, read from {token_env})")
    if isinstance(error, hub.RepositoryNotFoundError):
        hint = "" if token else f" (a private model needs a token in {token_env})"
        return TrainerError("ModelUnreachable", f"{name} is not on the Hugging Face Hub{hint}")
    if isinstance(error, hub.RevisionNotFoundError):
        return TrainerError("ModelUnreachable", f"{name} has no revision {source.revision}")
    return TrainerError("ModelUnreachable", f"cannot load the base model {name}: {error}")


def load(uri: str, method: str, token_env: str, workdir: str | None = None):
    """(model, tokenizer, source) for training: bf16 on a GPU that has it, else float32; with
    `qlora`, the weights in 4-bit NF4 (a CUDA GPU is required)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cuda = torch.cuda.is_available()
    if method == "qlora" and not cuda:
        raise TrainerError(
            "NoGpu",
            "QLoRA needs a CUDA GPU (bitsandbytes' 4-bit NF4 kernels); none is visible here. "
            "Give the trainer a GPU (backend.kubernetes.gpus) or use sft.method: lora",
        )
    source = resolve(uri, workdir or tempfile.mkdtemp(prefix="twin-trainer-"))
    token = os.environ.get(token_env) or None
    common = {"revision": source.revision, "token": token}
    if source.gguf_file:
        common["gguf_file"] = source.gguf_file
    kwargs = {}
    if source.gguf_file and method == "lora":
        from transformers import GgufConfig

        # Training needs plain weights: every GGUF block unpacked at load.
        kwargs["quantization_config"] = GgufConfig(gguf_file=source.gguf_file, dequantize=True)
    if method == "qlora":
        from transformers import BitsAndBytesConfig

        # 4-bit weights are placed on this process's GPU as they load (one per process when
        # data-parallel); a bf16 model is moved by the Trainer.
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.name_or_path, **common)
        model = AutoModelForCausalLM.from_pretrained(source.name_or_path, dtype=dtype, **common, **kwargs)
    except TrainerError:
        raise
    except Exception as error:  # the Hub's and transformers' many failures, each explained
        if source.from_hub:
            raise _hub_error(error, source, token, token_env) from None
        raise TrainerError("ModelUnreachable", f"cannot load the base model {uri}: {error}") from None
    quantizer = getattr(model, "hf_quantizer", None)
    if source.gguf_file and quantizer is not None and quantizer.quantization_config.quant_method == "gguf":
        # The weights are plain tensors now; what remains of the GGUF loader only stops training.
        quantizer.remove_quantization_config(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML
    return model, tokenizer, source
