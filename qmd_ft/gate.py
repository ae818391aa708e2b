"""The publish gate: is the candidate better than the deployed model on the same queries?

Scores are compared per query in points (reward x 100), paired, with a bootstrap confidence
interval of the mean delta: a tiny mean gain on 70 queries can be noise, and a release must not
be a regression in disguise. Default rule (configurable in `publish`): mean delta > 0 and the
95% interval's lower bound > -0.5 points.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from qmd_ft.errors import UserError

BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class GateRule:
    """What "better" means."""

    min_delta: float = 0.0
    min_ci_lower: float = -0.5
    bootstrap_samples: int = 10_000
    confidence: float = 0.95


@dataclass
class GateResult:
    """The decision with everything that led to it."""

    passed: bool
    mean_delta: float
    ci: tuple[float, float]
    wins: int
    losses: int
    ties: int
    n: int
    reasons: list[str]
    per_query: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "mean_delta": round(self.mean_delta, 4),
            "ci": [round(self.ci[0], 4), round(self.ci[1], 4)],
            "wins": self.wins,
            "losses": self.losses,
            "ties": self.ties,
            "n": self.n,
            "reasons": self.reasons,
            "per_query": self.per_query,
        }


def paired_bootstrap_ci(
    deltas: list[float], samples: int, confidence: float, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """Percentile interval of the mean of `deltas` resampled with replacement (seeded)."""
    n = len(deltas)
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(deltas, k=n)) / n for _ in range(samples))
    alpha = (1 - confidence) / 2
    lo = means[int(alpha * samples)]
    hi = means[min(samples - 1, int((1 - alpha) * samples))]
    return lo, hi


def _points(data: dict[str, Any]) -> dict[str, float]:
    """Points per query; a query listed twice is refused, since pairs are matched by query."""
    points: dict[str, float] = {}
    for row in data["results"]:
        if row["query"] in points:
            raise UserError(f"results list query {row['query']!r} twice: cannot pair scores")
        points[row["query"]] = float(row["reward"]) * 100
    return points


def compare(candidate: dict[str, Any], baseline: dict[str, Any], rule: GateRule) -> GateResult:
    """Gate decision; refuses (UserError) when the two were not scored comparably."""
    if candidate["rubric_version"] != baseline["rubric_version"]:
        raise UserError(
            f"rubric versions differ ({candidate['rubric_version']} vs "
            f"{baseline['rubric_version']}): re-score with `qmd-ft score --results`"
        )
    cand, base = _points(candidate), _points(baseline)
    if set(cand) != set(base):
        only_c, only_b = len(set(cand) - set(base)), len(set(base) - set(cand))
        raise UserError(
            f"query sets differ ({only_c} only in candidate, {only_b} only in baseline): "
            "evaluate both on the same queries file"
        )
    if not cand:
        raise UserError("no queries to compare")
    queries = list(cand)
    deltas = [cand[q] - base[q] for q in queries]
    mean = sum(deltas) / len(deltas)
    ci = paired_bootstrap_ci(deltas, rule.bootstrap_samples, rule.confidence)
    reasons = []
    if not mean > rule.min_delta:
        reasons.append(f"mean delta {mean:+.2f} points is not > {rule.min_delta:+.2f}")
    if not ci[0] > rule.min_ci_lower:
        reasons.append(
            f"{rule.confidence:.0%} interval lower bound {ci[0]:+.2f} is not > "
            f"{rule.min_ci_lower:+.2f}"
        )
    per_query = [
        {
            "query": q,
            "candidate": round(cand[q], 2),
            "baseline": round(base[q], 2),
            "delta": round(d, 2),
        }
        for q, d in zip(queries, deltas, strict=True)
    ]
    return GateResult(
        passed=not reasons,
        mean_delta=mean,
        ci=ci,
        wins=sum(d > 0 for d in deltas),
        losses=sum(d < 0 for d in deltas),
        ties=sum(d == 0 for d in deltas),
        n=len(deltas),
        reasons=reasons,
        per_query=per_query,
    )


def retrieval_reasons(
    candidate: dict[str, Any],
    baseline: dict[str, Any],
    metric: str = "recall@10",
    max_drop: float = 0.0,
) -> list[str]:
    """Second gate metric: the candidate's retrieval must not regress beyond `max_drop`.

    Both are `qmd-ft eval --retrieval` results; the model systems' mean `metric` is compared.
    """
    try:
        cand = candidate["systems"]["model"]["mean"][metric]
        base = baseline["systems"]["model"]["mean"][metric]
    except KeyError as e:
        raise UserError(f"not a retrieval results file with a model system and {metric}") from e
    if cand < base - max_drop:
        return [f"retrieval {metric} {cand:.4f} < deployed {base:.4f} - {max_drop:.4f}"]
    return []
