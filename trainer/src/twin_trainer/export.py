"""The trained adapter in the forms its servers load: PEFT's folder (vLLM, transformers) and a
GGUF LoRA file (llama.cpp and `twin serve`'s embedded engine)."""

from __future__ import annotations

import os
import re

import numpy as np

from .errors import TrainerError

# transformers' model types whose llama.cpp architecture has another name.
ARCH_ALIASES = {"mistral": "llama"}
# Architectures whose GGUF conversion reorders the rows of the query and key projections
# (llama.cpp rotates interleaved pairs where transformers rotates halves): the LoRA's B
# matrices of those projections must be reordered the same way.
ROTARY_PERMUTED = {"llama"}

PEFT_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<which>[AB])\.weight$")


def permute_rows(weights: np.ndarray, heads: int) -> np.ndarray:
    """Rows of a projection in llama.cpp's rotary layout: within each head, the two halves
    interleaved."""
    rows = weights.shape[0]
    return weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def gguf_arch(model_type: str):
    import gguf

    name = ARCH_ALIASES.get(model_type, model_type)
    for arch, arch_name in gguf.MODEL_ARCH_NAMES.items():
        if arch_name == name:
            return arch, name
    return None, name


def write_gguf_adapter(tensors: dict, model_config, alpha: float, path: str) -> dict:
    """Writes the PEFT LoRA `tensors` (adapter_model.safetensors' names) as a GGUF adapter for
    `model_config`'s architecture; returns what was written (tensor count, architecture)."""
    import gguf

    arch, name = gguf_arch(model_config.model_type)
    if arch is None:
        raise TrainerError("ExportFailed", f"llama.cpp has no architecture {name!r}: no GGUF adapter can be written for it")
    layers = model_config.num_hidden_layers
    names = gguf.get_tensor_name_map(arch, layers)
    heads = model_config.num_attention_heads
    kv_heads = getattr(model_config, "num_key_value_heads", None) or heads
    writer = gguf.GGUFWriter(path + ".partial", name)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    written = 0
    for key in sorted(tensors):
        match = PEFT_KEY.match(key)
        if not match:
            raise TrainerError("ExportFailed", f"the adapter holds {key}, which is not a LoRA matrix")
        module, which = match["module"], match["which"]
        base = names.get_name(module)
        if base is None:
            raise TrainerError("ExportFailed", f"llama.cpp's {name} has no tensor for {module}")
        weights = tensors[key].float().cpu().numpy()
        if which == "B" and name in ROTARY_PERMUTED:
            if base.endswith(".attn_q"):
                weights = permute_rows(weights, heads)
            elif base.endswith(".attn_k"):
                weights = permute_rows(weights, kv_heads)
        writer.add_tensor(f"{base}.weight.lora_{which.lower()}", np.ascontiguousarray(weights, dtype=np.float16))
        written += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(path + ".partial", path)
    return {"architecture": name, "tensors": written}
