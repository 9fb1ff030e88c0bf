"""Fixtures: a tiny randomly initialised Llama-shaped model with a BPE tokenizer trained here,
and a tiny dataset revision in DESIGN §4's formats."""

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TOPICS = [
    ("ownership", "Ownership means each value has one owner, and the value is dropped when the owner goes out of scope."),
    ("borrowing", "Borrowing lets code use a value without taking it: many shared references or one mutable one."),
    ("lifetimes", "Lifetimes name how long references live, so the compiler can prove none outlives its data."),
    ("traits", "Traits describe behaviour that types share, like interfaces with default methods."),
    ("enums", "Enums hold one of several variants, and match makes you handle every one of them."),
    ("closures", "Closures capture their environment by reference, by mutable reference or by value."),
    ("iterators", "Iterators are lazy: nothing happens until a consumer such as collect or sum asks for items."),
    ("errors", "Result carries either a value or an error, and the question mark operator passes errors up."),
]
SYSTEM = "You are Ferris. Write in Ferris's voice."


def conversation(topic, answer):
    return {"messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Write the section about {topic} in your own voice."},
        {"role": "assistant", "content": answer},
    ]}


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dataset") / "r1"
    (folder / "instruct").mkdir(parents=True)
    (folder / "preference").mkdir()
    train = [conversation(t, a) for t, a in TOPICS[:6]] * 2
    test = [conversation(t, a) for t, a in TOPICS[6:]]
    preference = [
        {"prompt": f"Write the section about {t} in your own voice.", "chosen": a, "rejected": f"{t.capitalize()} is a thing in programming."}
        for t, a in TOPICS
    ]
    for path, rows in [("instruct/train.jsonl", train), ("instruct/test.jsonl", test), ("preference/train.jsonl", preference)]:
        (folder / path).write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "manifest.json").write_text(json.dumps({"revision": "r1"}))
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A Llama with 2 layers of width 64 (4 query heads, 2 key/value heads), random weights,
    and a byte-level BPE tokenizer trained on the dataset's words."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llama")
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    texts = [SYSTEM] + [f"Write the section about {t} in your own voice. {a} assistant user system" for t, a in TOPICS]
    tokenizer.train_from_iterator(
        texts * 4,
        trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|endoftext|>"
    )
    fast.chat_template = CHATML
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def training_config(dataset_dir, model_dir, output, **overrides):
    config = {
        "run": "test-run",
        "datasetUri": str(dataset_dir),
        "datasetRevision": "r1",
        "baseModelUri": str(model_dir),
        "outputUri": str(output),
        "sft": {"epochs": 1, "learningRate": 0.005, "loraRank": 8, "loraAlpha": 16, "maxSeqLength": 128, "perDeviceBatchSize": 4},
        "dpo": {"enabled": True, "learningRate": 0.001, "beta": 0.1, "maxLength": 128, "perDeviceBatchSize": 4},
        "maxSteps": 6,
        "terminationMessagePath": str(output.parent / f"{output.name}.termination"),
    }
    config.update(overrides)
    return config


def write_config(path, config):
    path.write_text(json.dumps(config))
    return str(path)
