"""`qmd-ft eval --retrieval`: a model's expansions searched the way QMD searches.

Generates one expansion per judged query with the same backend and settings as the rubric
eval, then runs `run_retrieval_eval` (raw query vs model expansion vs gold expansion).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from qmd_ft import prompt
from qmd_ft.config import EvalConfig, ServingConfig
from qmd_ft.evaluation import backend_for, model_hash, sampled_settings, sampling_record
from qmd_ft.retrieval.results import RetrievalProvenance, RetrievalResults

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
    serving: ServingConfig | None = None,
) -> RetrievalResults:
    """Expansions from the model for every judged query, scored by retrieval.

    `indexes`: corpus indexes already built over `eval_dir/notes` (reused across models).
    `serving`: sample as QMD serves (k seeded runs, metrics averaged per query) instead of
    generating once with `gen`.
    """
    from qmd_ft.backend import get_backend
    from qmd_ft.retrieval.run import EVAL_DIR, load_queries, run_retrieval_eval

    root = eval_dir or EVAL_DIR
    queries = load_queries(root / "queries.jsonl")
    name = backend_for(model, backend)
    settings = sampled_settings(gen, serving) if serving is not None else [gen]
    start = time.perf_counter()
    samples: list[dict[str, str]] = []
    for g in settings:
        generate = get_backend(name).generator(model, adapters, g, device)
        expansions: dict[str, str] = {}
        for i in range(0, len(queries), g.batch_size):
            batch = queries[i : i + g.batch_size]
            outs = generate([prompt.render_prompt(q.query) for q in batch])
            expansions.update({q.id: out for q, out in zip(batch, outs, strict=True)})
        samples.append(expansions)
    seconds = time.perf_counter() - start
    result = run_retrieval_eval(
        samples[0] if serving is None else samples, eval_dir=root, indexes=indexes
    )
    provenance = RetrievalProvenance(
        model=model,
        model_sha256=model_hash(model),
        adapters=adapters,
        backend=name,
        generation=settings[0].model_dump(),
        generation_seconds=round(seconds, 2),
    )
    if serving is not None:
        provenance.sampling = sampling_record(serving)
    expansions = samples[0] if serving is None else samples
    return result.model_copy(update={"provenance": provenance, "expansions": expansions})
