"""faiss-cpu's exact inner-product search (IndexFlatIP) on the vectors benches/gateway.rs wrote,
one query at a time as a gateway searches: prints p50/p99 latency and the top-k ids as JSON.

    python3 benches/faiss_search.py WORK_DIR DIMENSION K
"""
import json
import sys
import time

import faiss
import numpy as np

work, dimension, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
vectors = np.fromfile(f"{work}/vectors.f32", dtype="<f4").reshape(-1, dimension)
queries = np.fromfile(f"{work}/queries.f32", dtype="<f4").reshape(-1, dimension)
index = faiss.IndexFlatIP(dimension)
index.add(vectors)
index.search(queries[:5], k)  # warm-up
latencies, ids = [], []
for query in queries:
    started = time.perf_counter()
    _, found = index.search(query.reshape(1, -1), k)
    latencies.append((time.perf_counter() - started) * 1e3)
    ids.append([int(i) for i in found[0]])
latencies.sort()
print(json.dumps({
    "p50_ms": latencies[len(latencies) // 2],
    "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    "ids": ids,
    "threads": faiss.omp_get_max_threads(),
}))
