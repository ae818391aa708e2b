"""`qmd-ft data stats`: what the training set covers, to spot gaps before training."""

from __future__ import annotations

import statistics
from collections import Counter

from qmd_ft.data.reader import Row

SHORT_QUERY_WORDS = 2


def _distribution(values: list[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "median": 0, "mean": 0, "p90": 0, "max": 0}
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "median": statistics.median(ordered),
        "mean": round(statistics.fmean(ordered), 1),
        "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        "max": ordered[-1],
    }


def compute_stats(rows: list[Row]) -> dict:
    """Counts per file and line type, length distributions, short and only-mode shares."""
    per_file = Counter(r.path for r in rows)
    per_type: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    for r in rows:
        per_type.update(k for k, _ in r.example.lines)
        modes[r.example.only_mode or "full"] += 1
    n = len(rows) or 1
    short = sum(len(r.example.base_query.split()) <= SHORT_QUERY_WORDS for r in rows)
    return {
        "rows": len(rows),
        "per_file": dict(sorted(per_file.items())),
        "lines_per_type": {k: per_type.get(k, 0) for k in ("hyde", "lex", "vec")},
        "modes": {k: modes.get(k, 0) for k in ("full", "lex", "vec", "hyde")},
        "query_words": _distribution([len(r.example.base_query.split()) for r in rows]),
        "output_chars": _distribution([len(r.example.output) for r in rows]),
        "short_query_share": round(short / n, 3),
        "only_mode_share": round((len(rows) - modes.get("full", 0)) / n, 3),
    }
