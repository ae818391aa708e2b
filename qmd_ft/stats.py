"""The one statistic every gate uses: a seeded paired bootstrap of a mean per-query delta.

The rubric gate (points per query) and the retrieval metrics (nDCG@10, recall@10 per query)
compare two systems on the same queries, so both resample the per-query deltas with
replacement and take the percentile interval of their mean. One implementation means the same
deltas always give the same interval, whichever gate asks. Pure Python (`random`), so the core
`qmd-ft compare` runs without numpy.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

BOOTSTRAP_SEED = 0
BOOTSTRAP_SAMPLES = 10_000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedDelta:
    """Mean of paired per-query deltas with its bootstrap interval and the win/loss count."""

    mean: float
    ci_low: float
    ci_high: float
    wins: int
    losses: int
    ties: int
    n: int


def paired_bootstrap(
    deltas: Sequence[float],
    samples: int = BOOTSTRAP_SAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile interval of the mean of `deltas` resampled with replacement (seeded).

    An empty sequence has no interval: (0, 0), which no "lower bound > 0" rule passes.
    """
    n = len(deltas)
    if n == 0:
        return (0.0, 0.0)
    values = [float(d) for d in deltas]
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(samples))
    alpha = (1 - confidence) / 2
    low = means[int(alpha * samples)]
    high = means[min(samples - 1, int((1 - alpha) * samples))]
    return (low, high)


def paired_delta(
    candidate: Sequence[float],
    baseline: Sequence[float],
    samples: int = BOOTSTRAP_SAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> PairedDelta:
    """Candidate minus baseline, query by query (same order), summarised with its interval."""
    if len(candidate) != len(baseline):
        raise ValueError(f"paired rows differ in length: {len(candidate)} vs {len(baseline)}")
    deltas = [c - b for c, b in zip(candidate, baseline, strict=True)]
    low, high = paired_bootstrap(deltas, samples, confidence, seed)
    return PairedDelta(
        mean=sum(deltas) / len(deltas) if deltas else 0.0,
        ci_low=low,
        ci_high=high,
        wins=sum(d > 0 for d in deltas),
        losses=sum(d < 0 for d in deltas),
        ties=sum(d == 0 for d in deltas),
        n=len(deltas),
    )
