"""Scores per second of `qmd_ft.reward.score` on one core.

GRPO scores every rollout inline, so the rubric must stay far cheaper than generation; the
target is >= 30,000 scores/s. Inputs are real (query, completion) pairs cycled:

- `golden` (default): the 300 golden cases, a mix of full and only-mode expansions, think
  blocks, leaks, invalid and empty outputs, like a GRPO batch early in training;
- `training`: QMD's full training targets (3 lex, 3 vec and a ~290-character hyde each), the
  slowest realistic case, like the output of a trained model.

Time is CPU time of this one-threaded process, measured in short rounds, so other work on the
machine neither inflates nor (much) deflates the number; the median round is reported.

    .venv/bin/python bench/bench_reward.py [--source golden|training] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from itertools import cycle, islice
from pathlib import Path

from qmd_ft.reward import score

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SOURCES = {
    "golden": (SHARED / "reward/golden_public.jsonl", "query", "completion"),
    "training": (SHARED / "qmd-data/qmd_expansion_v2.jsonl", "input", "output"),
}
ROUND = 2000  # scores per timed round


def load_pairs(source: str) -> list[tuple[str, str]]:
    """(query, completion) pairs from one of SOURCES."""
    path, query_key, completion_key = SOURCES[source]
    if not path.exists():
        sys.exit(f"{path} not found: the benchmark needs ../shared beside the project")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(row[query_key], row[completion_key]) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=sorted(SOURCES), default="golden")
    parser.add_argument("--seconds", type=float, default=3.0, help="CPU time to measure")
    args = parser.parse_args()

    pairs = load_pairs(args.source)
    for query, completion in pairs:  # warm-up: every code path once
        score(query, completion)

    source = cycle(pairs)
    rates: list[float] = []
    spent = 0.0
    while spent < args.seconds:
        batch = list(islice(source, ROUND))
        start = time.process_time()
        for query, completion in batch:
            score(query, completion)
        elapsed = time.process_time() - start
        spent += elapsed
        rates.append(ROUND / elapsed)
    print(
        f"{args.source}: {len(rates) * ROUND} scores over {len(pairs)} distinct pairs in "
        f"{spent:.2f} s CPU: median {statistics.median(rates):,.0f} scores/s "
        f"(best round {max(rates):,.0f})"
    )


if __name__ == "__main__":
    main()
