"""`qmd-ft eval --retrieval`: a model's expansions searched the way QMD searches.

Generates one expansion per judged query with the same backend and settings as the rubric
eval, then runs `run_retrieval_eval` (raw query vs model expansion vs gold expansion).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qmd_ft import prompt
from qmd_ft.config import EvalConfig
from qmd_ft.evaluation import backend_for, model_hash

if TYPE_CHECKING:
    from qmd_ft.retrieval.run import Indexes


def retrieval_eval(
    model: str,
    adapters: list[str],
    gen: EvalConfig,
    *,
    backend: str = "auto",
    device: str | None = None,
    eval_dir: Path | None = None,
    indexes: Indexes | None = None,
) -> dict[str, Any]:
    """Expansions from the model for every judged query, scored by retrieval.

    `indexes`: corpus indexes already built over `eval_dir/notes` (reused across models).
    """
    from qmd_ft.backend import get_backend
    from qmd_ft.retrieval.run import EVAL_DIR, load_queries, run_retrieval_eval

    root = eval_dir or EVAL_DIR
    queries = load_queries(root / "queries.jsonl")
    name = backend_for(model, backend)
    generate = get_backend(name).generator(model, adapters, gen, device)
    start = time.perf_counter()
    expansions: dict[str, str] = {}
    for i in range(0, len(queries), gen.batch_size):
        batch = queries[i : i + gen.batch_size]
        outs = generate([prompt.render_prompt(q.query) for q in batch])
        expansions.update({q.id: out for q, out in zip(batch, outs, strict=True)})
    seconds = time.perf_counter() - start
    result = run_retrieval_eval(expansions, eval_dir=root, indexes=indexes)
    result["provenance"] = {
        "model": model,
        "model_sha256": model_hash(model),
        "adapters": adapters,
        "backend": name,
        "generation": gen.model_dump(),
        "generation_seconds": round(seconds, 2),
    }
    result["expansions"] = expansions
    return result
