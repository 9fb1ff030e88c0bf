"""Fixtures: a tiny randomly initialised Llama-shaped model with a BPE tokenizer trained here,
and a tiny dataset revision in DESIGN §4's formats."""

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

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
    from twin_trainer import synthetic

    folder = tmp_path_factory.mktemp("dataset") / "r1"
    train = [conversation(t, a) for t, a in TOPICS[:6]] * 2
    test = [conversation(t, a) for t, a in TOPICS[6:]]
    preference = [
        {"prompt": f"Write the section about {t} in your own voice.", "chosen": a, "rejected": f"{t.capitalize()} is a thing in programming."}
        for t, a in TOPICS
    ]
    return Path(synthetic.write_dataset(str(folder), train, test, preference))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A Llama with 2 layers of width 64 (4 query heads, 2 key/value heads), random weights,
    and a byte-level BPE tokenizer trained on the dataset's words."""
    from twin_trainer import synthetic

    folder = tmp_path_factory.mktemp("tiny-llama")
    texts = [SYSTEM] + [f"Write the section about {t} in your own voice. {a} assistant user system" for t, a in TOPICS]
    tok = synthetic.tokenizer(texts * 4)
    synthetic.llama(
        str(folder), tok, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
    )
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
