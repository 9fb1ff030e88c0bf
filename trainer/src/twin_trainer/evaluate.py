"""Voice by likelihood, measured where the twin was trained: the mean negative log-likelihood per
token of the author's held-out passages (the dataset's test split, one sample per passage) as the
answers to their instructions and as plain text, and of a control text that is not the author's,
under the adapter and under the base model (the same weights with the adapter switched off), in
the same process and on the same device. The same measure as `twin eval`'s likelihood part
(README, "Evaluating a twin"), with the same 95% bootstrap intervals."""

from __future__ import annotations

import hashlib
import random
import re

# Resamples drawn for an interval (as twin eval).
RESAMPLES = 2000
# Words of one control passage (as twin eval).
CONTROL_PASSAGE_WORDS = 180


def control_passages(text: str) -> list[str]:
    """The control text in passages of about CONTROL_PASSAGE_WORDS words, cut after sentences."""
    passages, current = [], []
    for sentence in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
        current.append(sentence)
        if sum(len(s.split()) for s in current) >= CONTROL_PASSAGE_WORDS:
            passages.append(" ".join(current))
            current = []
    if sum(len(s.split()) for s in current) >= CONTROL_PASSAGE_WORDS // 2:
        passages.append(" ".join(current))
    return passages


def held_out(samples: list[dict], limit: int) -> list[dict]:
    """One sample per passage, in the order of their passages' hashes (an order that does not
    depend on the file's), at most `limit` (0: all)."""
    seen, distinct = set(), []
    for sample in samples:
        answer = sample["messages"][-1]["content"]
        if answer not in seen:
            seen.add(answer)
            distinct.append(sample)
    distinct.sort(key=lambda s: hashlib.sha256(s["messages"][-1]["content"].encode()).hexdigest())
    return distinct[:limit] if limit else distinct


def _interval(values: list[float], seed: int) -> dict:
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(RESAMPLES))
    at = lambda q: means[round((len(means) - 1) * q)]
    return {"value": sum(values) / n, "low": at(0.025), "high": at(0.975), "n": n}


def _difference_of_means(a: list[float], b: list[float], seed: int) -> dict:
    rng = random.Random(seed)
    resample = lambda values: sum(values[rng.randrange(len(values))] for _ in values) / len(values)
    differences = sorted(resample(a) - resample(b) for _ in range(RESAMPLES))
    at = lambda q: differences[round((len(differences) - 1) * q)]
    return {"value": sum(a) / len(a) - sum(b) / len(b), "low": at(0.025), "high": at(0.975), "n": min(len(a), len(b))}


def _compared(pairs: list[tuple[float, float]], seed: int) -> dict:
    twin = [p[0] for p in pairs]
    baseline = [p[1] for p in pairs]
    return {
        "twin": _interval(twin, seed),
        "baseline": _interval(baseline, seed + 1),
        "difference": _interval([t - b for t, b in pairs], seed + 2),
    }


class _Scorer:
    def __init__(self, model, tokenizer, max_tokens: int):
        import torch

        self.torch = torch
        self.model = model
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.device = next(model.parameters()).device

    def _nll(self, prompt: list[int], target: list[int]) -> tuple[float, int]:
        torch = self.torch
        target = target[: max(0, self.max_tokens - len(prompt))]
        if not prompt or not target:
            return 0.0, 0
        ids = torch.tensor([prompt + target], device=self.device)
        with torch.no_grad():
            logits = self.model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
        nll = torch.nn.functional.cross_entropy(logits, ids[0, len(prompt) :], reduction="sum")
        return float(nll), len(target)

    def answer(self, sample: dict) -> tuple[float, int]:
        messages = sample["messages"]
        # The template writes the special tokens it wants (a BOS included) itself.
        text = self.tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
        prompt = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        target = self.tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"]
        return self._nll(list(prompt), target)

    def plain(self, text: str) -> tuple[float, int]:
        tokens = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id
        prompt, target = ([bos], tokens) if bos is not None else (tokens[:1], tokens[1:])
        return self._nll(prompt, target)


def read_control(control: str) -> str:
    """The control text `control` names: `builtin:opticks`, or a local file."""
    from importlib import resources

    from .errors import config_error

    if control == "builtin:opticks":
        return resources.files("twin_trainer").joinpath("control/opticks.txt").read_text(encoding="utf-8")
    try:
        with open(control, encoding="utf-8") as file:
            return file.read()
    except OSError as error:
        raise config_error(f"evaluation.control {control}: cannot read it: {error}") from None


def after_training(config, model, tokenizer, test: list[dict]) -> dict:
    """The evaluation a run records in metrics.json, as its configuration asks."""
    settings = config.evaluation
    if not settings.enabled:
        return {"notMeasured": {"likelihood": "evaluation.enabled is false"}}
    text = read_control(settings.control)
    passages = settings.passages
    if passages is None:
        passages = 32 if next(model.parameters()).is_cuda else 8
    return likelihood(model, tokenizer, test, text, passages, settings.max_tokens, config.seed)


def likelihood(model, tokenizer, test: list[dict], control_text: str | None, passages: int, max_tokens: int, seed: int) -> dict:
    """The likelihood part of the evaluation of `model` (a PEFT model) against its base, or why
    a part was not measured."""
    not_measured = {}
    samples = held_out(test, passages)
    if not samples:
        return {"notMeasured": {"likelihood": "the dataset has no test split (instruct/test.jsonl is empty or missing)"}}
    control = control_passages(control_text or "")[: len(samples)]
    if not control:
        not_measured["control"] = "no control text was given (evaluation.controlText)"
    scorer = _Scorer(model, tokenizer, max_tokens)
    was_training = model.training
    model.eval()
    try:
        scores: dict[str, list[tuple[float, float]]] = {"authorAnswers": [], "authorText": [], "controlText": []}
        tokens = {name: 0 for name in scores}
        parts = [("authorAnswers", samples, scorer.answer), ("authorText", [s["messages"][-1]["content"] for s in samples], scorer.plain), ("controlText", control, scorer.plain)]
        for name, texts, score in parts:
            for text in texts:
                nll_twin, n = score(text)
                with model.disable_adapter():
                    nll_base, _ = score(text)
                if n:
                    scores[name].append((nll_twin / n, nll_base / n))
                    tokens[name] += n
    finally:
        model.train(was_training)
    result = {"passages": len(samples), "maxTokens": max_tokens}
    for name, pairs in scores.items():
        if pairs:
            result[name] = {"nll": _compared(pairs, seed), "tokens": tokens[name]}
    if scores["controlText"] and scores["authorText"]:
        reduction = lambda pairs: [b - t for t, b in pairs]
        result["authorSpecificReduction"] = _difference_of_means(reduction(scores["authorText"]), reduction(scores["controlText"]), seed)
    if not_measured:
        result["notMeasured"] = not_measured
    return result


def headline(evaluation: dict) -> dict:
    """The figures the result line carries (numbers, for SageMaker's metric definitions too):
    the NLL reduction on the author's held-out answers, and the author-specific one."""
    figures = {}
    answers = evaluation.get("authorAnswers")
    if answers:
        figures["evaluationNllReduction"] = -answers["nll"]["difference"]["value"] + 0.0
    specific = evaluation.get("authorSpecificReduction")
    if specific:
        figures["evaluationAuthorSpecificNllReduction"] = specific["value"]
    return figures
