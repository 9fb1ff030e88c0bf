"""The dataset revision's training files (DESIGN §4), read and checked: `instruct/` in TRL's
conversational format for SFT, `preference/` (prompt, chosen, rejected) for DPO."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .errors import TrainerError

ROLES = {"system", "user", "assistant"}


@dataclass
class TrainingData:
    sft_train: list[dict]
    sft_test: list[dict]
    # Conversational triples: the prompt as a user turn (after the same system turn as SFT's,
    # when there is one), the answers as assistant turns, so that DPO sees the chat template
    # SFT trained with.
    preference: list[dict]


def _lines(path: str, check, what: str) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise TrainerError("DatasetInvalid", f"{path} line {number} is not JSON: {error}") from None
            problem = check(row)
            if problem:
                raise TrainerError("DatasetInvalid", f"{path} line {number} is not a {what}: {problem}")
            rows.append(row)
    return rows


def _conversation(row) -> str | None:
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not messages:
        return "it needs a non-empty `messages` list"
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"a message needs a role of {sorted(ROLES)}"
        if not isinstance(message.get("content"), str):
            return "a message needs a string `content`"
    if messages[-1]["role"] != "assistant":
        return "the last message must be the assistant's answer"
    return None


def _triple(row) -> str | None:
    if not isinstance(row, dict):
        return "it must be an object"
    for key in ("prompt", "chosen", "rejected"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            return f"it needs a non-empty string `{key}`"
    return None


def load(folder: str, need_preference: bool) -> TrainingData:
    if not os.path.isdir(folder):
        raise TrainerError("DatasetMissing", f"the dataset revision {folder} does not exist")
    train_path = os.path.join(folder, "instruct", "train.jsonl")
    if not os.path.isfile(train_path):
        raise TrainerError(
            "DatasetMissing",
            f"{folder} has no instruct/train.jsonl: is it a TwinDataset revision built with instruct enabled?",
        )
    sft_train = _lines(train_path, _conversation, "conversation")
    if not sft_train:
        raise TrainerError("DatasetEmpty", f"{train_path} has no samples: the dataset produced nothing to train on")
    test_path = os.path.join(folder, "instruct", "test.jsonl")
    sft_test = _lines(test_path, _conversation, "conversation") if os.path.isfile(test_path) else []
    preference = []
    preference_path = os.path.join(folder, "preference", "train.jsonl")
    if need_preference and os.path.isfile(preference_path):
        system = next((m["content"] for m in sft_train[0]["messages"] if m["role"] == "system"), None)
        lead = [{"role": "system", "content": system}] if system else []
        for row in _lines(preference_path, _triple, "preference triple"):
            preference.append({
                "prompt": lead + [{"role": "user", "content": row["prompt"]}],
                "chosen": [{"role": "assistant", "content": row["chosen"]}],
                "rejected": [{"role": "assistant", "content": row["rejected"]}],
            })
    return TrainingData(sft_train=sft_train, sft_test=sft_test, preference=preference)
