"""A small copy of the shipped retrieval corpus, for tests that search it end to end."""

from __future__ import annotations

import json
import shutil
from collections.abc import Collection
from pathlib import Path

from qmd_ft.retrieval.run import EVAL_DIR, load_queries


def cut_eval_dir(folder: Path, query_ids: Collection[str], every: int) -> Path:
    """`evals/retrieval/` cut to the judged notes of `query_ids` plus every `every`-th other
    note (distractors), with their queries and gold expansions, in `folder`."""
    queries = [q for q in load_queries(EVAL_DIR / "queries.jsonl") if q.id in query_ids]
    keep = {name for q in queries for name in q.relevant}
    keep |= set(sorted(p.name for p in (EVAL_DIR / "notes").glob("*.md"))[::every])
    (folder / "notes").mkdir(parents=True)
    for name in keep:
        shutil.copy(EVAL_DIR / "notes" / name, folder / "notes" / name)
    lines = (EVAL_DIR / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [line for line in lines if json.loads(line)["id"] in query_ids]
    (folder / "queries.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    shutil.copy(EVAL_DIR / "gold_expansions.jsonl", folder / "gold_expansions.jsonl")
    return folder
