"""The release gate: one verdict, rule by rule, read by the CLI, pipeline, publish and card.

A release must be better where QMD's users feel it, so the gate has up to three rules, each a
paired comparison on the same queries with the same bootstrap interval (`qmd_ft.stats`):

- `rubric_vs_deployed`: rubric points per query (reward x 100) against the deployed model's
  eval: mean delta > `publish.min_delta` and the interval's lower bound > `publish.min_ci_lower`.
- `retrieval_vs_raw`: the candidate's expansions against no expansion at all on
  `evals/retrieval/` (per metric in `publish.retrieval.vs_raw`, default nDCG@10): the lower
  bound must be above the floor. A model that writes well-shaped gibberish fails here.
- `retrieval_vs_deployed`: the candidate's retrieval against the deployed model's published
  retrieval results (per metric in `publish.retrieval.vs_deployed`): lower bound >= the floor.

A rule without its inputs is skipped (first release, no retrieval results) unless
`publish.retrieval.required`, where a missing retrieval result fails the release. When the
deployed model is the candidate itself (a run again after its release), there is nothing to
compare: the verdict is `already_deployed`, which passes and publishes nothing new. `Verdict` is
the only place the decision is made; everything else reads `verdict.passed` and its rules.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, computed_field

from qmd_ft.config import PublishConfig
from qmd_ft.errors import UserError
from qmd_ft.evaluation.results import EvalResults
from qmd_ft.results import GREEDY
from qmd_ft.retrieval.results import QueryMetrics, RetrievalResults
from qmd_ft.stats import PairedDelta, paired_delta

Status = Literal["pass", "fail", "skipped"]


class Interval(BaseModel):
    """One paired comparison's numbers: both means, the mean delta and its interval."""

    candidate: float
    baseline: float
    mean_delta: float
    ci_low: float
    ci_high: float
    wins: int
    losses: int
    ties: int
    n: int

    @classmethod
    def of(cls, cand: list[float], base: list[float], publish: PublishConfig) -> Interval:
        d: PairedDelta = paired_delta(
            cand, base, samples=publish.bootstrap_samples, confidence=publish.confidence
        )
        return cls(
            candidate=sum(cand) / len(cand) if cand else 0.0,
            baseline=sum(base) / len(base) if base else 0.0,
            mean_delta=d.mean,
            ci_low=d.ci_low,
            ci_high=d.ci_high,
            wins=d.wins,
            losses=d.losses,
            ties=d.ties,
            n=d.n,
        )


def shown(metric: str, n: Interval) -> tuple[str, str, str]:
    """(candidate, baseline, "delta [CI]") as tables print them: points 2 decimals, metrics 3."""
    p = 2 if metric == "points" else 3
    return (
        f"{n.candidate:.{p}f}",
        f"{n.baseline:.{p}f}",
        f"{n.mean_delta:+.{p}f} [{n.ci_low:+.{p}f}, {n.ci_high:+.{p}f}]",
    )


class RuleResult(BaseModel):
    """One rule of the gate: what it requires, the numbers it saw and whether they pass."""

    name: str
    metric: str
    requirement: str
    status: Status
    reason: str = ""
    numbers: Interval | None = None
    reported: dict[str, Interval] = {}
    """Metrics shown beside the gated one (e.g. recall@10), not part of the decision."""

    @property
    def passed(self) -> bool:
        return self.status != "fail"


class QueryPoints(BaseModel):
    """One query's rubric points (reward x 100) for the candidate and the deployed model."""

    query: str
    candidate: float
    baseline: float
    delta: float


class Verdict(BaseModel):
    """The gate's decision with every rule that led to it."""

    baseline_source: str
    rules: list[RuleResult]
    per_query: list[QueryPoints] = []
    """Rubric points per query, when a deployed eval exists."""
    deployed: bool = False
    """The repo already serves this very candidate (`already_deployed`): the release is out."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rules)

    @property
    def reasons(self) -> list[str]:
        return [f"{r.name}: {r.reason}" for r in self.rules if r.status == "fail"]

    def rule(self, name: str) -> RuleResult | None:
        return next((r for r in self.rules if r.name == name), None)

    def headline(self) -> str:
        """One short line for a table cell or log: PASS, or REFUSED naming the failed rules
        (their numbers and reasons are in `reasons` and the rule table)."""
        rubric = self.rule("rubric_vs_deployed")
        lead = ""
        if rubric and rubric.numbers:
            lead = f"{rubric.numbers.mean_delta:+.2f} points, "
        if self.deployed:
            return "ALREADY DEPLOYED: the deployed model is this candidate"
        failed = [f"{r.name} ({r.metric})" for r in self.rules if r.status == "fail"]
        return lead + ("PASS" if self.passed else "REFUSED: " + ", ".join(failed))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# -- rubric ----------------------------------------------------------------------------------


def _points(data: EvalResults) -> dict[str, float]:
    """Points per query; a query listed twice is refused, since pairs are matched by query."""
    points: dict[str, float] = {}
    for row in data.results:
        if row.query in points:
            raise UserError(f"results list query {row.query!r} twice: cannot pair scores")
        points[row.query] = float(row.reward) * 100
    return points


def _sampling(data: EvalResults | RetrievalResults) -> tuple[float, int, float, int]:
    """How a results file was generated, as far as comparability goes: greedy or sampled."""
    return (data.provenance.sampling or GREEDY).key()


def rubric_rule(
    candidate: EvalResults, baseline: EvalResults, publish: PublishConfig
) -> tuple[RuleResult, list[QueryPoints]]:
    """Rubric points vs the deployed model; refuses (UserError) incomparable results."""
    if candidate.rubric_version != baseline.rubric_version:
        raise UserError(
            f"rubric versions differ ({candidate.rubric_version} vs "
            f"{baseline.rubric_version}): re-score with `qmd-ft score --results`"
        )
    if _sampling(candidate) != _sampling(baseline):
        raise UserError(
            "the two evals were generated differently (greedy vs sampled, or other settings: "
            f"{_sampling(candidate)} vs {_sampling(baseline)}): evaluate both the same way"
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
    numbers = Interval.of([cand[q] for q in queries], [base[q] for q in queries], publish)
    conf = f"{publish.confidence:.0%}"
    reasons = []
    if not numbers.mean_delta > publish.min_delta:
        reasons.append(
            f"mean delta {numbers.mean_delta:+.2f} points is not > {publish.min_delta:+.2f}"
        )
    if not numbers.ci_low > publish.min_ci_lower:
        reasons.append(
            f"{conf} CI lower bound {numbers.ci_low:+.2f} is not > {publish.min_ci_lower:+.2f}"
        )
    per_query = [
        QueryPoints(
            query=q,
            candidate=round(cand[q], 2),
            baseline=round(base[q], 2),
            delta=round(cand[q] - base[q], 2),
        )
        for q in queries
    ]
    rule = RuleResult(
        name="rubric_vs_deployed",
        metric="points",
        requirement=(
            f"mean delta > {publish.min_delta:+.2f} points and {conf} CI lower bound > "
            f"{publish.min_ci_lower:+.2f}"
        ),
        status="fail" if reasons else "pass",
        reason="; ".join(reasons),
        numbers=numbers,
    )
    return rule, per_query


# -- retrieval -------------------------------------------------------------------------------


def retrieval_rows(doc: RetrievalResults, system: str) -> dict[str, QueryMetrics]:
    """Per-query metrics of one system of an `eval --retrieval` document, by query id."""
    rows = {row.id: row.system(system) for row in doc.per_query}
    found = {i: m for i, m in rows.items() if m is not None}
    if len(found) < len(rows):
        raise UserError(
            f"not a retrieval results file with per-query {system!r} rows "
            "(write one with `qmd-ft eval --retrieval -o FILE`)"
        )
    return found


def _paired(
    cand: dict[str, QueryMetrics],
    base: dict[str, QueryMetrics],
    metric: str,
    publish: PublishConfig,
) -> Interval:
    ids = sorted(cand)
    return Interval.of(
        [cand[i].value(metric) for i in ids], [base[i].value(metric) for i in ids], publish
    )


def _retrieval_rule(
    name: str,
    cand: dict[str, QueryMetrics],
    base: dict[str, QueryMetrics],
    floors: dict[str, float],
    strict: bool,
    publish: PublishConfig,
) -> list[RuleResult]:
    """One rule per gated metric: its CI lower bound above (strict) or at least its floor."""
    conf = f"{publish.confidence:.0%}"
    reported = {
        m: _paired(cand, base, m, publish) for m in publish.retrieval.report if m not in floors
    }
    out = []
    for metric, floor in floors.items():
        numbers = _paired(cand, base, metric, publish)
        ok = numbers.ci_low > floor if strict else numbers.ci_low >= floor
        op = ">" if strict else ">="
        out.append(
            RuleResult(
                name=name,
                metric=metric,
                requirement=f"{conf} CI lower bound of the {metric} delta {op} {floor:+.3f}",
                status="pass" if ok else "fail",
                reason=""
                if ok
                else (
                    f"{metric} {numbers.candidate:.3f} vs {numbers.baseline:.3f}: delta "
                    f"{numbers.mean_delta:+.3f}, {conf} CI [{numbers.ci_low:+.3f}, "
                    f"{numbers.ci_high:+.3f}], lower bound not {op} {floor:+.3f}"
                ),
                numbers=numbers,
                reported=reported,
            )
        )
    return out


def _skipped(name: str, why: str, fail: bool) -> RuleResult:
    return RuleResult(
        name=name, metric="-", requirement="-", status="fail" if fail else "skipped", reason=why
    )


def retrieval_vs_raw(doc: RetrievalResults, publish: PublishConfig) -> list[RuleResult]:
    """Do the candidate's expansions help search compared with the raw query alone?"""
    model, raw = retrieval_rows(doc, "model"), retrieval_rows(doc, "raw")
    if missing := doc.missing_expansions.get("model"):
        raise UserError(
            f"the candidate's retrieval results lack expansions for {len(missing)} queries "
            f"({', '.join(missing[:3])}…): evaluate every query"
        )
    return _retrieval_rule("retrieval_vs_raw", model, raw, publish.retrieval.vs_raw, True, publish)


def retrieval_vs_deployed(
    cand_doc: RetrievalResults, base_doc: RetrievalResults, publish: PublishConfig
) -> list[RuleResult]:
    """No search regression against the deployed model, on the same corpus and queries."""
    if cand_doc.corpus != base_doc.corpus:
        cand_corpus, base_corpus = (
            d.corpus.to_json() if d.corpus else None for d in (cand_doc, base_doc)
        )
        raise UserError(
            "the retrieval results were measured on different corpora "
            f"({cand_corpus} vs {base_corpus}): evaluate both the same way"
        )
    if _sampling(cand_doc) != _sampling(base_doc):
        raise UserError(
            "the retrieval results were generated differently (greedy vs sampled, or other "
            f"settings: {_sampling(cand_doc)} vs {_sampling(base_doc)}): evaluate both the same way"
        )
    cand, base = retrieval_rows(cand_doc, "model"), retrieval_rows(base_doc, "model")
    if set(cand) != set(base):
        raise UserError("the retrieval results cover different queries: cannot pair them")
    floors = publish.retrieval.vs_deployed
    return _retrieval_rule("retrieval_vs_deployed", cand, base, floors, False, publish)


def decide(
    publish: PublishConfig,
    *,
    candidate: EvalResults,
    baseline: EvalResults | None,
    baseline_source: str,
    candidate_retrieval: RetrievalResults | None = None,
    baseline_retrieval: RetrievalResults | None = None,
) -> Verdict:
    """The verdict: every rule that applies, evaluated on the given results documents.

    `baseline` None means nothing is deployed (a first release): the rules against the
    deployed model are skipped, the rule against raw queries still applies.
    """
    required = publish.retrieval.required
    rules: list[RuleResult] = []
    per_query: list[QueryPoints] = []
    if baseline is None:
        rules.append(_skipped("rubric_vs_deployed", f"{baseline_source}: first release", False))
    else:
        rubric, per_query = rubric_rule(candidate, baseline, publish)
        rules.append(rubric)
    if candidate_retrieval is None:
        why = "no retrieval results for the candidate (qmd-ft eval --retrieval)"
        rules.append(_skipped("retrieval_vs_raw", why, required))
    else:
        rules += retrieval_vs_raw(candidate_retrieval, publish)
    if baseline is None and baseline_retrieval is None:
        why = f"{baseline_source}: first release"
        rules.append(_skipped("retrieval_vs_deployed", why, False))
    elif candidate_retrieval is None or baseline_retrieval is None:
        whose = "candidate" if candidate_retrieval is None else "deployed model"
        why = f"no retrieval results for the {whose}"
        rules.append(_skipped("retrieval_vs_deployed", why, required))
    else:
        rules += retrieval_vs_deployed(candidate_retrieval, baseline_retrieval, publish)
    return Verdict(baseline_source=baseline_source, rules=rules, per_query=per_query)


def already_deployed(baseline_source: str, model_sha256: str) -> Verdict:
    """The verdict on a candidate the repo already serves (same model hash in its published
    eval): the release is out, so it passes with nothing compared (a model against itself
    scores a delta of 0, which the rubric rule would refuse)."""
    rule = RuleResult(
        name="already_deployed",
        metric="model sha256",
        requirement="the repo serves another model (else nothing to judge)",
        status="pass",
        reason=f"the deployed model is this candidate ({model_sha256[:12]})",
    )
    return Verdict(baseline_source=baseline_source, rules=[rule], deployed=True)
