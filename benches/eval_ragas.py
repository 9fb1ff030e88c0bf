"""Ragas's non-LLM metrics on the answers of a `twin eval` run (benches/eval.sh), timed, next
to twin eval's own figures on the same answers.

  python benches/eval_ragas.py EVALUATION_JSON CHUNKS_JSONL

- NonLLMStringSimilarity (Levenshtein): each answer against the author's reference passage.
  twin eval's nearest figure: the character n-gram likeness to the author's profile (not to
  the one passage), so the two measure different things: compared here by which side wins.
- NonLLMContextRecall: the passages the gateway put in each answer's prompt against the
  reference passage (recall at a string similarity of 0.5). twin eval's nearest figure:
  retrieval recall@k of the source chunk over all held-out instructions.
"""

import asyncio
import json
import sys
import time

from ragas.dataset_schema import SingleTurnSample
from ragas.metrics import NonLLMContextRecall
from ragas.metrics.collections import NonLLMStringSimilarity


async def main(evaluation_path, chunks_path):
    evaluation = json.load(open(evaluation_path))
    chunks = {}
    for line in open(chunks_path):
        record = json.loads(line)
        chunks[record["id"]] = record["text"]
    items = evaluation["answers"]["items"]
    similarity = NonLLMStringSimilarity()
    recall = NonLLMContextRecall()
    started = time.perf_counter()
    scores = {"twin": [], "baseline": []}
    for item in items:
        for side in scores:
            result = await similarity.ascore(reference=item["reference"], response=item[side]["text"])
            scores[side].append(result.value)
    similarity_seconds = time.perf_counter() - started
    started = time.perf_counter()
    recalls = []
    for item in items:
        sample = SingleTurnSample(
            retrieved_contexts=[chunks[c] for c in item["twin"]["sources"] if c in chunks],
            reference_contexts=[item["reference"]],
        )
        recalls.append(await recall.single_turn_ascore(sample))
    recall_seconds = time.perf_counter() - started
    n = len(items)
    mean = lambda values: sum(values) / max(len(values), 1)
    wins = mean([1.0 if t > b else 0.5 if t == b else 0.0 for t, b in zip(scores["twin"], scores["baseline"])])
    ours = evaluation["answers"]
    print(f"Ragas 0.4.3 on the same {n} questions (twin and baseline answers):")
    print(f"  NonLLMStringSimilarity to the reference passage: baseline {mean(scores['baseline']):.3f}, "
          f"twin {mean(scores['twin']):.3f}, twin wins {wins:.3f}; {similarity_seconds * 1000:.1f} ms for {2 * n} answers")
    print(f"  twin eval's character n-gram likeness to the author: baseline {ours['authorLikeness']['baseline']['value']:.3f}, "
          f"twin {ours['authorLikeness']['twin']['value']:.3f}, twin wins {ours['winRate']['value']:.3f}")
    print(f"  NonLLMContextRecall of the twin's passages: {mean(recalls):.3f}; {recall_seconds * 1000:.1f} ms for {n} answers")
    retrieval = evaluation["retrieval"]
    at = dict(zip(retrieval["k"], retrieval["recall"]))
    print(f"  twin eval's retrieval recall of the source chunk: @1 {at[1]:.3f} @3 {at[3]:.3f} @5 {at[5]:.3f} "
          f"over {retrieval['questions']} held-out instructions")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
