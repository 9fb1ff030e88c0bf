"""Voice by likelihood, measured where the twin was trained: the mean negative log-likelihood per
token of the author's held-out passages (the dataset's test split, one sample per passage) as the
answers to their instructions and as plain text, and of a control text that is not the author's,
under the adapter and under the base model (the same weights with the adapter switched off), in
the same process and on the same device. The same measure as `twin eval`'s likelihood part
(docs/evaluation.md), with the same 95% bootstrap intervals."""

from __future__ import annotations

import hashlib
import math
import os
import random
import re
from collections import Counter

# Resamples drawn for an interval (as twin eval).
RESAMPLES = 2000
# Words of one control passage (as twin eval).
CONTROL_PASSAGE_WORDS = 120


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

    from .storage import local_path

    if control == "builtin:opticks":
        return resources.files("twin_trainer").joinpath("control/opticks.txt").read_text(encoding="utf-8")
    path = local_path(control)
    if path is None:
        raise config_error(f"evaluation.control {control}: the trainer reads a control text from builtin:opticks or a file, not a remote URI")
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except OSError as error:
        raise config_error(f"evaluation.control {control}: cannot read it: {error}") from None


def _ticker(progress, part: str):
    """What reports `done` of `total` texts of an evaluation `part` to `progress`, if any."""
    if progress is None:
        return None
    return lambda done, total: progress.report("evaluation", part=part, done=done, total=total)


def after_training(config, model, tokenizer, test: list[dict], train: list[dict], workdir: str, progress=None) -> dict:
    """The evaluation a run records in metrics.json, as its configuration asks: likelihood
    against the base (and against the serving adapter, when one is named), then answers; each
    text scored and each question answered reported to `progress`."""
    settings = config.evaluation
    if not settings.enabled:
        return {"notMeasured": {"likelihood": "evaluation.enabled is false", "answers": "evaluation.enabled is false"}}
    import time

    started = time.monotonic()
    text = read_control(settings.control)
    passages = settings.passages
    if passages is None:
        passages = 32 if next(model.parameters()).is_cuda else 8
    result = likelihood(model, tokenizer, test, text, passages, settings.max_tokens, config.seed, _ticker(progress, "likelihood"))
    result["likelihoodSeconds"] = round(time.monotonic() - started, 3)
    if settings.serving_adapter_uri:
        serving = against_serving(model, tokenizer, test, passages, settings, config.seed, workdir)
        if "notMeasured" in serving:
            result.setdefault("notMeasured", {})["serving"] = serving["notMeasured"]
        else:
            result["serving"] = serving
    answered = answers(model, tokenizer, test, train, settings.questions, settings.answer_tokens, config.seed, _ticker(progress, "answers"))
    if "notMeasured" in answered:
        result.setdefault("notMeasured", {}).update(answered["notMeasured"])
    else:
        result["answers"] = answered
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def against_serving(model, tokenizer, test: list[dict], passages: int, settings, seed: int, workdir: str) -> dict:
    """NLL per token of the held-out answers under the adapter served now and under this run's,
    in the same process: `reduction` is serving − this run (positive: this run is closer)."""
    from . import storage
    from .errors import TrainerError

    uri = settings.serving_adapter_uri
    folder = storage.local_path(uri)
    if folder is None:
        folder = storage.download(uri, os.path.join(workdir, "serving-adapter"), "serving adapter")
    if not os.path.isfile(os.path.join(folder, "adapter_config.json")):
        raise TrainerError("ServingAdapterMissing", f"the serving adapter at {uri} has no adapter_config.json: it is not a PEFT adapter folder")
    samples = held_out(test, passages)
    if not samples:
        return {"notMeasured": "the dataset has no test split"}
    scorer = _Scorer(model, tokenizer, settings.max_tokens)
    model.load_adapter(folder, adapter_name="serving")
    was_training = model.training
    model.eval()
    pairs = []
    try:
        for sample in samples:
            model.set_adapter("default")
            nll_twin, n = scorer.answer(sample)
            model.set_adapter("serving")
            nll_serving, _ = scorer.answer(sample)
            if n:
                pairs.append((nll_twin / n, nll_serving / n))
    finally:
        model.set_adapter("default")
        model.delete_adapter("serving")
        model.train(was_training)
    return {
        "adapterUri": uri,
        "nll": _compared(pairs, seed),
        "reduction": _interval([s - t for t, s in pairs], seed + 3),
    }


# Character n-gram lengths of the author's profile (as twin eval).
NGRAMS = (3, 4, 5)
# Differences smaller than this are ties (as twin eval).
TIE = 1e-9


def _ngrams(text: str) -> Counter:
    chars = " ".join(text.split())
    return Counter(chars[i : i + n] for n in NGRAMS for i in range(len(chars) - n + 1))


class Profile:
    """The author's character 3–5-gram TF-IDF profile, and the cosine of a text to it: the
    definition `twin eval` uses (src/eval/style.rs), smoothed idf as scikit-learn's."""

    def __init__(self, passages: list[str]):
        document_frequency, totals = Counter(), Counter()
        for passage in passages:
            counts = _ngrams(passage)
            document_frequency.update(counts.keys())
            totals.update(counts)
        n = len(passages)
        self.idf = {g: math.log((1 + n) / (1 + df)) + 1 for g, df in document_frequency.items()}
        self.unseen_idf = math.log(1 + n) + 1
        self.vector = self._weigh(totals)

    def _weigh(self, counts: Counter) -> dict:
        vector = {g: c * self.idf.get(g, self.unseen_idf) for g, c in counts.items()}
        norm = math.sqrt(sum(v * v for v in vector.values()))
        return {g: v / norm for g, v in vector.items()} if norm else vector

    def likeness(self, text: str) -> float:
        return sum(v * self.vector.get(g, 0.0) for g, v in self._weigh(_ngrams(text)).items())


def answers(model, tokenizer, test: list[dict], train: list[dict], questions: int, answer_tokens: int, seed: int, tick=None) -> dict:
    """The adapter's and the base model's greedy answers to `questions` held-out instructions,
    each answer's likeness to the author's profile (their training answers), and the win rate:
    the share where the adapter's answer is the closer, ties counting half."""
    if questions == 0:
        return {"notMeasured": {"answers": "evaluation.questions is 0"}}
    samples = held_out(test, questions)
    if not samples:
        return {"notMeasured": {"answers": "the dataset has no test split (instruct/test.jsonl is empty or missing)"}}
    passages = list(dict.fromkeys(s["messages"][-1]["content"] for s in train))
    if not passages:
        return {"notMeasured": {"answers": "the dataset has no training answers to profile the author by"}}
    import torch

    profile = Profile(passages)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()

    def answer(messages: list[dict]) -> str:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"].to(device)
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=answer_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
            )
        return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()

    items, wins = [], []
    try:
        for number, sample in enumerate(samples):
            if tick:
                tick(number, len(samples))
            prompt = sample["messages"][:-1]
            twin = answer(prompt)
            with model.disable_adapter():
                base = answer(prompt)
            likeness = [profile.likeness(twin), profile.likeness(base)]
            difference = likeness[0] - likeness[1]
            wins.append(0.5 if abs(difference) <= TIE else float(difference > 0))
            items.append({"instruction": prompt[-1]["content"], "twin": twin, "baseline": base, "likeness": likeness})
    finally:
        model.train(was_training)
    pairs = [tuple(item["likeness"]) for item in items]
    return {
        "questions": len(items),
        "answerTokens": answer_tokens,
        "decoding": "greedy",
        "authorLikeness": _compared(pairs, seed + 10),
        "winRate": _interval(wins, seed + 13),
        "items": items,
    }


def likelihood(model, tokenizer, test: list[dict], control_text: str | None, passages: int, max_tokens: int, seed: int, tick=None) -> dict:
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
        total, done = sum(len(texts) for _, texts, _ in parts), 0
        for name, texts, score in parts:
            for text in texts:
                if tick:
                    tick(done, total)
                done += 1
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
    the NLL reduction on the author's held-out answers, the author-specific one, the win rate,
    the reduction against the serving adapter; and, in words, what was not measured."""
    figures = {}
    author_answers = evaluation.get("authorAnswers")
    if author_answers:
        figures["evaluationNllReduction"] = -author_answers["nll"]["difference"]["value"] + 0.0
    specific = evaluation.get("authorSpecificReduction")
    if specific:
        figures["evaluationAuthorSpecificNllReduction"] = specific["value"]
    answered = evaluation.get("answers")
    if answered:
        figures["evaluationWinRate"] = answered["winRate"]["value"]
    serving = evaluation.get("serving")
    if serving:
        figures["evaluationServingNllReduction"] = serving["reduction"]["value"]
    not_measured = evaluation.get("notMeasured")
    if not_measured:
        # Short: the result line is a termination message (4 KiB at most).
        figures["evaluationNotMeasured"] = "; ".join(f"{part}: {why}" for part, why in sorted(not_measured.items()))[:600]
    return figures
