"""Eval: one expansion per eval query, scored with the rubric, saved with provenance.

- `results`: the typed results document (`EvalResults`: rows, summary, provenance), read and
  written with the same keys as ever (`load_results`, `write_results`).
- `scoring`: the rubric on completions: a row per query, the summary, k samples merged, and
  `rescore` (the scores recomputed from saved completions, without a model).
- `run`: a model through a backend (`run_eval`, greedy; `run_sampled_eval`, as QMD serves).
"""

from qmd_ft.evaluation.results import (
    RATINGS,
    RESULTS_FORMAT,
    EvalResults,
    EvalRow,
    Summary,
    load_results,
    write_results,
)
from qmd_ft.evaluation.run import (
    backend_for,
    build_results,
    model_hash,
    run_eval,
    run_sampled_eval,
    sampled_settings,
    sampling_record,
)
from qmd_ft.evaluation.scoring import evaluate, merge_samples, rescore, score_row, summarize

__all__ = [
    "RATINGS",
    "RESULTS_FORMAT",
    "EvalResults",
    "EvalRow",
    "Summary",
    "backend_for",
    "build_results",
    "evaluate",
    "load_results",
    "merge_samples",
    "model_hash",
    "rescore",
    "run_eval",
    "run_sampled_eval",
    "sampled_settings",
    "sampling_record",
    "score_row",
    "summarize",
    "write_results",
]
