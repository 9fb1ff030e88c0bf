"""Made-up models and data for the tests and the GPU check, where nothing can be downloaded: a
byte-level BPE tokenizer trained on the spot, a randomly initialised Llama built from a config
(speed does not depend on the weights' values), and a dataset revision in DESIGN §4's formats."""

from __future__ import annotations

import json
import os
import random

from .model import CHATML

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def tokenizer(texts: list[str], vocab_size: int = 400):
    """A fast tokenizer with ChatML's special tokens and template, trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|endoftext|>"
    )
    fast.chat_template = CHATML
    return fast


def llama(folder: str, tok, vocab_size: int | None = None, seed: int = 0, dtype: str | None = None, **shape) -> str:
    """A randomly initialised Llama of `shape` (LlamaConfig fields) saved with `tok` to `folder`
    (in `dtype`, e.g. bfloat16, when given). `vocab_size` may exceed the tokenizer's, as a real
    model's output layer does."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size or len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **shape,
    )
    with torch.device("cpu"):
        model = LlamaForCausalLM(config)
    if dtype:
        model = model.to(getattr(torch, dtype))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def write_dataset(folder: str, train: list[dict], test: list[dict], preference: list[dict]) -> str:
    """A dataset revision folder with instruct/{train,test}.jsonl and preference/train.jsonl."""
    for path, rows in [("instruct/train.jsonl", train), ("instruct/test.jsonl", test), ("preference/train.jsonl", preference)]:
        os.makedirs(os.path.dirname(os.path.join(folder, path)), exist_ok=True)
        with open(os.path.join(folder, path), "w", encoding="utf-8") as file:
            file.writelines(json.dumps(row) + "\n" for row in rows)
    with open(os.path.join(folder, "manifest.json"), "w", encoding="utf-8") as file:
        json.dump({"revision": os.path.basename(folder)}, file)
    return folder


WORDS = (
    "ownership borrow lifetime trait enum match closure iterator error result option vector string slice "
    "module crate cargo test thread channel mutex async await future pattern struct impl generic macro "
    "the a of to and in is it that you we this with for as on be are can not your when"
).split()


def random_conversations(count: int, min_words: int, max_words: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """`count` conversations whose answers have between `min_words` and `max_words` words, and as
    many preference triples over the same prompts."""
    rng = random.Random(seed)
    conversations, triples = [], []
    for index in range(count):
        words = rng.randint(min_words, max_words)
        answer = " ".join(rng.choice(WORDS) for _ in range(words))
        prompt = f"Write part {index} about {rng.choice(WORDS)} in your own voice."
        conversations.append({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]})
        rejected = " ".join(rng.choice(WORDS) for _ in range(max(1, words // 2)))
        triples.append({"prompt": prompt, "chosen": answer, "rejected": rejected})
    return conversations, triples
