"""Writes tests/fixtures/embeddings/all-MiniLM-L6-v2.json: reference sentence embeddings computed
by sentence-transformers, which the Rust embedder must match within 1e-4 cosine.

Run once (the fixture is committed), with sentence-transformers installed:
    scripts/fetch-models
    python3 scripts/reference/embedding_fixture.py .cache/models/all-MiniLM-L6-v2
"""

import json
import sys

import sentence_transformers
from sentence_transformers import SentenceTransformer

TEXTS = [
    "Hello, world!",
    "Rust's ownership model makes memory safety a compile-time guarantee.",
    "An LLM twin writes like one particular person, learned from their posts.",
    "",
    "ünïcödé façade — naïve café, 日本語のテキスト, emoji 🚀 and symbols ±∞.",
    "fn main() { let v: Vec<u32> = (0..10).map(|x| x * x).collect(); println!(\"{:?}\", v); }",
    # Longer than the tokenizer.json's 128-token truncation, shorter than the model's 256.
    " ".join(["Chunking splits long documents into overlapping passages so that each one fits the"
              " embedding model's context and still carries enough meaning to be retrieved."] * 6),
    # Longer than 256 tokens: truncated by the model's max_seq_length.
    " ".join(["The quick brown fox jumps over the lazy dog while the operator reconciles twins."] * 40),
]


def main() -> None:
    model_dir = sys.argv[1]
    model = SentenceTransformer(model_dir, device="cpu")
    vectors = model.encode(TEXTS, batch_size=4, normalize_embeddings=True, convert_to_numpy=True)
    fixture = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "producer": f"sentence-transformers {sentence_transformers.__version__}, normalize_embeddings=True",
        "max_seq_length": model.max_seq_length,
        "texts": TEXTS,
        "embeddings": [[round(float(x), 7) for x in row] for row in vectors],
    }
    with open("tests/fixtures/embeddings/all-MiniLM-L6-v2.json", "w") as out:
        json.dump(fixture, out, ensure_ascii=False, indent=None)
        out.write("\n")
    print(f"wrote {len(TEXTS)} embeddings of dimension {vectors.shape[1]}")


if __name__ == "__main__":
    main()
