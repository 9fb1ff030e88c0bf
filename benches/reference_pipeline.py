"""The reference Python stack for the dataset benchmark: the same HTML files read, their text
extracted (standard library HTML parser, main content only), split by LangChain's recursive
character splitter, and embedded by sentence-transformers all-MiniLM-L6-v2 on the CPU.

    python3 benches/reference_pipeline.py CORPUS_DIR MODEL_DIR

Prints one JSON line with its counts and seconds per stage.
"""

import glob
import json
import os
import sys
import time
from html.parser import HTMLParser

from langchain_text_splitters import RecursiveCharacterTextSplitter
from sentence_transformers import SentenceTransformer

SKIP = {"print.html", "toc.html", "404.html", "index.html", "title-page.html"}


class MainText(HTMLParser):
    """Text inside <main> (mdBook puts the chapter there), without scripts and styles."""

    def __init__(self):
        super().__init__()
        self.depth = 0
        self.skip = 0
        self.parts = []

    def handle_starttag(self, tag, attrs):
        if tag == "main":
            self.depth += 1
        if tag in ("script", "style", "nav"):
            self.skip += 1

    def handle_endtag(self, tag):
        if tag == "main":
            self.depth -= 1
        if tag in ("script", "style", "nav"):
            self.skip -= 1

    def handle_data(self, data):
        if self.depth > 0 and self.skip == 0:
            self.parts.append(data)


def main():
    corpus, model_dir = sys.argv[1], sys.argv[2]
    timings = {}
    started = time.perf_counter()
    documents = []
    for path in sorted(glob.glob(os.path.join(corpus, "*.html"))):
        if os.path.basename(path) in SKIP:
            continue
        parser = MainText()
        with open(path, encoding="utf-8", errors="replace") as f:
            parser.feed(f.read())
        text = "".join(parser.parts).strip()
        if len(text) >= 80:
            documents.append(text)
    timings["collect"] = time.perf_counter() - started

    started = time.perf_counter()
    model = SentenceTransformer(model_dir, device="cpu")
    timings["load_model"] = time.perf_counter() - started

    started = time.perf_counter()
    # About 256 MiniLM tokens of English prose, with the same overlap share as the Rust run.
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=125)
    chunks = [c for d in documents for c in splitter.split_text(d)]
    timings["chunk"] = time.perf_counter() - started

    started = time.perf_counter()
    vectors = model.encode(chunks, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    timings["embed"] = time.perf_counter() - started
    print(json.dumps({"documents": len(documents), "chunks": len(chunks), "dimension": int(vectors.shape[1]), "timings": timings}))


if __name__ == "__main__":
    main()
