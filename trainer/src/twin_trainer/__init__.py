"""twin-trainer: fine-tunes a twin's base model on a TwinDataset (LoRA or QLoRA SFT, then DPO)
and writes the adapter (PEFT and GGUF), its tokenizer and metrics."""

__version__ = "0.1.0"
