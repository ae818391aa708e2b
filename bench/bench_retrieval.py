"""Index build time and per-query search time of the retrieval evaluation.

`qmd-ft eval --retrieval` rebuilds both indexes on every run, so their build time is a fixed
cost per evaluation, and it embeds every query and vec/hyde line once, so query time must stay
small next to generating the expansions. Measured on the shipped corpus
(`evals/retrieval/`) with the gold expansions as the expanded workload:

- BM25 build (FTS5, in memory) and one BM25 sub-query;
- model load, vector build (one embedding per note) and query-text embedding;
- one full search, raw and expanded, once the query texts are embedded (BM25 lists,
  cosine lists, RRF fusion).

    .venv/bin/python bench/bench_retrieval.py [--device cpu|cuda] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qmd_ft.retrieval.index import BM25Index, Embedder, VectorIndex, load_notes  # noqa: E402
from qmd_ft.retrieval.run import EVAL_DIR, load_expansions, load_queries  # noqa: E402
from qmd_ft.retrieval.search import parse_expansion, search  # noqa: E402


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    """Fastest of `repeat` runs in seconds: the least disturbed by other load on the machine."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device for the embedding model")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of the fast steps")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    import torch

    notes = load_notes(EVAL_DIR / "notes")
    queries = load_queries(EVAL_DIR / "queries.jsonl")
    gold = load_expansions(EVAL_DIR / "gold_expansions.jsonl")
    lex_lines = [s.text for g in gold.values() for s in parse_expansion(g) if s.type == "lex"]
    vec_texts = [q.query for q in queries] + [
        s.text for g in gold.values() for s in parse_expansion(g) if s.type != "lex"
    ]

    bm25_build = best_of(args.repeat, lambda: BM25Index(notes))
    bm25 = BM25Index(notes)
    bm25_query = best_of(args.repeat, lambda: [bm25.search(t) for t in lex_lines]) / len(lex_lines)

    start = time.perf_counter()
    embedder = Embedder(device=args.device)
    model_load = time.perf_counter() - start
    start = time.perf_counter()
    vectors = VectorIndex(notes, embedder)
    vector_build = time.perf_counter() - start
    start = time.perf_counter()
    vectors.prepare(vec_texts)
    query_embedding = time.perf_counter() - start

    def run(expanded: bool) -> None:
        for q in queries:
            search(q.query, bm25, vectors, gold[q.id] if expanded else None)

    raw_search = best_of(args.repeat, lambda: run(False)) / len(queries)
    expanded_search = best_of(args.repeat, lambda: run(True)) / len(queries)

    result = {
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "notes": len(notes),
        "queries": len(queries),
        "bm25_build_ms": bm25_build * 1000,
        "bm25_subquery_ms": bm25_query * 1000,
        "model_load_s": model_load,
        "vector_build_s": vector_build,
        "vector_build_ms_per_note": vector_build / len(notes) * 1000,
        "query_texts_embedded": len(set(vec_texts)),
        "query_embedding_ms_per_text": query_embedding / len(set(vec_texts)) * 1000,
        "search_raw_ms_per_query": raw_search * 1000,
        "search_expanded_ms_per_query": expanded_search * 1000,
    }
    if args.json:
        print(json.dumps(result))
        return
    threads = result["torch_threads"]
    print(f"{len(notes)} notes, {len(queries)} queries, {args.device}, {threads} threads")
    print(f"BM25 build        {result['bm25_build_ms']:8.1f} ms")
    print(f"BM25 sub-query    {result['bm25_subquery_ms']:8.3f} ms")
    print(f"model load        {model_load:8.2f} s")
    per_note = result["vector_build_ms_per_note"]
    print(f"vector build      {vector_build:8.2f} s ({per_note:.0f} ms/note)")
    print(
        f"query embedding   {query_embedding:8.2f} s for {result['query_texts_embedded']} texts "
        f"({result['query_embedding_ms_per_text']:.1f} ms/text)"
    )
    print(f"search, raw       {result['search_raw_ms_per_query']:8.2f} ms/query (embedded)")
    print(f"search, expanded  {result['search_expanded_ms_per_query']:8.2f} ms/query (embedded)")


if __name__ == "__main__":
    main()
