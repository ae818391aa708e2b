"""Eval results, re-scoring, and the gate's decisions on constructed results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qmd_ft import reward
from qmd_ft.config import EvalConfig, PublishConfig
from qmd_ft.errors import UserError
from qmd_ft.evaluation import (
    EvalResults,
    build_results,
    evaluate,
    load_results,
    rescore,
    score_row,
    write_results,
)
from qmd_ft.gate import Verdict, decide
from qmd_ft.queries import Query, read_queries
from qmd_ft.retrieval.results import RetrievalResults
from qmd_ft.stats import paired_bootstrap

ROOT = Path(__file__).resolve().parents[1]
GOOD = (
    "hyde: Docker volumes keep container data on the host so it survives restarts and rebuilds.\n"
    "lex: docker volume mount\nlex: docker named volumes persistence\n"
    "vec: how do docker volumes persist container data\n"
    "vec: what is the difference between bind mounts and named volumes"
)


def results_doc(
    points: dict[str, float], tmp_path: Path, rubric: str = "v1", **more: object
) -> EvalResults:
    """A minimal results document with the given per-query rewards (0..1)."""
    return EvalResults.model_validate(
        {
            "rubric_version": rubric,
            "results": [{"query": q, "completion": "", "reward": r} for q, r in points.items()],
            **more,
        }
    )


def test_evaluate_scores_each_completion_in_order(tmp_path: Path) -> None:
    queries = [Query("docker volumes", "Technical", 3), Query("x", "Short", 5)]
    seen: list[list[str]] = []

    def generate(prompts: list[str]) -> list[str]:
        seen.append(prompts)
        return [GOOD, "<|im_start|>leak"][: len(prompts)] if len(prompts) == 2 else [GOOD]

    rows = evaluate(generate, queries, EvalConfig(batch_size=2))
    assert seen[0][0].endswith(
        "Expand this search query: docker volumes<|im_end|>\n<|im_start|>assistant\n"
    )
    assert rows[0].reward == reward.score("docker volumes", GOOD).reward
    assert rows[1].rating == "Failed" and rows[1].category == "Short"
    qfile = tmp_path / "q.txt"
    qfile.write_text("# Technical\ndocker volumes\n")
    doc = build_results(
        rows,
        model="m",
        adapters=[],
        queries_file=qfile,
        gen=EvalConfig(),
        backend="cuda",
        device="cpu",
        seconds=1.0,
    )
    s = doc.need_summary()
    assert s.n == 2 and s.ratings["Failed"] == 1
    assert s.mean_reward == pytest.approx((rows[0].reward + 0) / 2, abs=1e-6)
    assert set(s.categories) == {"Technical", "Short"}
    assert doc.provenance.queries_sha256 and doc.rubric_version == "v1"
    path = tmp_path / "r.json"
    write_results(doc, path)
    again = rescore(load_results(path))
    assert again.summary == s and again.rescored and again.rescored.rows_changed == 0


def test_load_results_rejects_non_results(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text('{"a": 1}')
    with pytest.raises(UserError, match="not a qmd-ft results file"):
        load_results(p)
    p.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UserError, match="nested too deeply"):
        load_results(p)


def gate(cand: EvalResults, base: EvalResults | None, **publish) -> Verdict:
    """The rubric-only verdict (no retrieval results) under the given publish settings."""
    return decide(PublishConfig(**publish), candidate=cand, baseline=base, baseline_source="test")


def test_gate_passes_clear_improvement(tmp_path: Path) -> None:
    qs = [f"q{i}" for i in range(40)]
    base = results_doc(dict.fromkeys(qs, 0.5), tmp_path)
    cand = results_doc({q: 0.5 + (0.1 if i % 2 else 0.0) for i, q in enumerate(qs)}, tmp_path)
    v = gate(cand, base, bootstrap_samples=2000)
    assert v.passed
    rubric = v.rule("rubric_vs_deployed")
    assert rubric is not None and rubric.status == "pass" and rubric.numbers is not None
    n = rubric.numbers
    assert (n.wins, n.ties, n.losses, n.n) == (20, 20, 0, 40)
    assert n.mean_delta == pytest.approx(5.0)
    assert 0 < n.ci_low < 5.0 < n.ci_high
    # no retrieval results and none required: those rules are shown as skipped, not passed
    assert [r.status for r in v.rules] == ["pass", "skipped", "skipped"]


def test_gate_fails_equal_and_noisy_regressions(tmp_path: Path) -> None:
    qs = [f"q{i}" for i in range(40)]
    base = results_doc(dict.fromkeys(qs, 0.5), tmp_path)
    same = gate(results_doc(dict.fromkeys(qs, 0.5), tmp_path), base)
    assert not same.passed and "not > +0.00" in same.reasons[0]
    # mean slightly positive, but one big loss makes the interval reach far below -0.5
    noisy = {q: 0.52 for q in qs}
    noisy["q0"] = 0.0
    v = gate(results_doc(noisy, tmp_path), base, bootstrap_samples=2000)
    rubric = v.rule("rubric_vs_deployed")
    assert rubric is not None and rubric.numbers is not None
    assert rubric.numbers.mean_delta > 0 and not v.passed
    assert any("lower bound" in x for x in v.reasons)
    assert v.headline().startswith("+0.")
    assert "REFUSED: rubric_vs_deployed" in v.headline()


def test_gate_refuses_different_queries_or_rubric(tmp_path: Path) -> None:
    a = results_doc({"q1": 0.5}, tmp_path)
    with pytest.raises(UserError, match="query sets differ"):
        gate(a, results_doc({"q2": 0.5}, tmp_path))
    with pytest.raises(UserError, match="rubric versions differ"):
        gate(a, results_doc({"q1": 0.5}, tmp_path, rubric="v0"))
    twice = results_doc({"q1": 0.5}, tmp_path)
    twice.results += results_doc({"q1": 0.9}, tmp_path).results
    with pytest.raises(UserError, match="'q1' twice"):
        gate(twice, a)
    sampling = {"temperature": 0.7, "top_k": 20, "samples": 3}
    sampled = results_doc({"q1": 0.5}, tmp_path, provenance={"sampling": sampling})
    with pytest.raises(UserError, match="greedy vs sampled"):
        gate(sampled, a)


def test_queries_file_refuses_a_repeated_query(tmp_path: Path) -> None:
    qfile = tmp_path / "queries.txt"
    qfile.write_text("# A\nrust lifetimes\n# B\ndocker  volumes\nrust   lifetimes\n")
    with pytest.raises(UserError, match=r"queries.txt:5: query 'rust lifetimes' repeats line 2"):
        read_queries(qfile)


def test_bootstrap_is_deterministic_and_brackets_the_mean() -> None:
    d = [float(i % 7) - 3 for i in range(50)]
    assert paired_bootstrap(d, 1000, 0.95) == paired_bootstrap(d, 1000, 0.95)
    assert paired_bootstrap(d, 1000, 0.95, seed=1) != paired_bootstrap(d, 1000, 0.95)
    lo, hi = paired_bootstrap(d, 1000, 0.95)
    assert lo < sum(d) / len(d) < hi
    assert paired_bootstrap([0.2, 0.3, 0.1], 1000)[0] > 0
    assert paired_bootstrap([]) == (0.0, 0.0)


def test_compare_cli_exit_codes(tmp_path: Path) -> None:
    qs = [f"q{i}" for i in range(30)]
    base, cand = tmp_path / "b.json", tmp_path / "c.json"
    write_results(results_doc(dict.fromkeys(qs, 0.4), tmp_path), base)
    write_results(results_doc(dict.fromkeys(qs, 0.6), tmp_path), cand)
    run = [sys.executable, "-m", "qmd_ft", "compare"]
    ok = subprocess.run([*run, str(cand), str(base), "--json"], capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout)["passed"] is True
    bad = subprocess.run([*run, str(base), str(cand)], capture_output=True, text=True)
    assert bad.returncode == 1 and "gate: FAIL" in bad.stdout


def test_project_eval_queries_file() -> None:
    # The project ships this file (eval, the demo and the parity tests read it): its absence is
    # a failure, not a reason to skip.
    qs = read_queries(ROOT / "evals/queries.txt")
    assert len(qs) >= 60 and len({q.category for q in qs}) >= 8


def test_score_results_rescores_saved_completions(tmp_path: Path) -> None:
    qfile = tmp_path / "q.txt"
    qfile.write_text("docker volumes\n")
    row = score_row(Query("docker volumes", "T", 1), GOOD).model_copy(update={"reward": 0.1})
    doc = build_results(
        [row],
        model="m",
        adapters=[],
        queries_file=qfile,
        gen=EvalConfig(),
        backend="cuda",
        device="cpu",
        seconds=1.0,
    )
    path = tmp_path / "r.json"
    write_results(doc, path)
    out = subprocess.run(
        [sys.executable, "-m", "qmd_ft", "score", "--results", str(path), "--json"],
        capture_output=True,
        text=True,
    )
    again = json.loads(out.stdout)
    assert again["results"][0]["reward"] == reward.score("docker volumes", GOOD).reward
    assert again["rescored"]["rows_changed"] == 1


def retrieval_doc(model: list[float], raw: list[float], metric: str = "ndcg@10") -> dict:
    """An `eval --retrieval` JSON object with per-query `metric` of the model and raw systems."""
    other = {"recall@5": 0.5, "recall@10": 0.5, "mrr": 0.5, "ndcg@10": 0.5}
    return {
        "corpus": {"notes": 3, "queries": len(model)},
        "per_query": [
            {"id": f"r{i}", "model": {**other, metric: m}, "raw": {**other, metric: r}}
            for i, (m, r) in enumerate(zip(model, raw, strict=True))
        ],
        "missing_expansions": {"model": []},
    }


def retrieval(model: list[float], raw: list[float]) -> RetrievalResults:
    """`retrieval_doc` as the typed document the gate reads."""
    return RetrievalResults.model_validate(retrieval_doc(model, raw))


def test_retrieval_rules_need_expansions_that_help_and_do_not_regress(tmp_path: Path) -> None:
    qs = [f"q{i}" for i in range(30)]
    base = results_doc(dict.fromkeys(qs, 0.4), tmp_path)
    cand = results_doc(dict.fromkeys(qs, 0.6), tmp_path)
    pub = PublishConfig(bootstrap_samples=2000)
    helps = retrieval([0.6 + 0.01 * (i % 3) for i in range(30)], [0.5] * 30)
    v = decide(
        pub,
        candidate=cand,
        baseline=base,
        baseline_source="t",
        candidate_retrieval=helps,
        baseline_retrieval=helps,
    )
    assert v.passed and [r.name for r in v.rules] == [
        "rubric_vs_deployed",
        "retrieval_vs_raw",
        "retrieval_vs_deployed",
    ]
    vs_raw = v.rule("retrieval_vs_raw")
    assert vs_raw is not None and vs_raw.numbers is not None and vs_raw.metric == "ndcg@10"
    assert vs_raw.numbers.candidate == pytest.approx(0.61) and vs_raw.numbers.ci_low > 0
    assert set(vs_raw.reported) == {"recall@10"}  # shown beside the gated metric
    # the case: the rubric improves, search gets worse than no expansion at all
    hurts = retrieval([0.4] * 20 + [0.6] * 10, [0.5] * 30)
    v = decide(pub, candidate=cand, baseline=base, baseline_source="t", candidate_retrieval=hurts)
    assert not v.passed
    assert v.rule("rubric_vs_deployed").status == "pass"  # type: ignore[union-attr]
    (reason,) = v.reasons
    assert reason.startswith("retrieval_vs_raw: ndcg@10 0.467 vs 0.500")
    # expansions that change nothing do not help search: the lower bound must be above 0
    same = retrieval([0.5] * 30, [0.5] * 30)
    v = decide(pub, candidate=cand, baseline=None, baseline_source="t", candidate_retrieval=same)
    assert [r.status for r in v.rules] == ["skipped", "fail", "skipped"]
    # a regression beyond -0.01 against the deployed model, though still above raw
    worse = retrieval([0.55 + 0.01 * (i % 3) for i in range(30)], [0.5] * 30)
    v = decide(
        pub,
        candidate=cand,
        baseline=base,
        baseline_source="t",
        candidate_retrieval=worse,
        baseline_retrieval=helps,
    )
    assert [r.status for r in v.rules] == ["pass", "pass", "fail"]
    # the floor is configurable
    lenient = PublishConfig(bootstrap_samples=2000, retrieval={"vs_deployed": {"ndcg@10": -0.1}})
    v = decide(
        lenient,
        candidate=cand,
        baseline=base,
        baseline_source="t",
        candidate_retrieval=worse,
        baseline_retrieval=helps,
    )
    assert v.passed
    # required: a release without retrieval results is refused, not waved through
    strict = PublishConfig(bootstrap_samples=2000, retrieval={"required": True})
    v = decide(strict, candidate=cand, baseline=base, baseline_source="t")
    assert not v.passed and "no retrieval results for the candidate" in v.reasons[0]
    with pytest.raises(UserError, match="different corpora"):
        other = retrieval([0.5] * 29, [0.5] * 29)
        decide(
            pub,
            candidate=cand,
            baseline=base,
            baseline_source="t",
            candidate_retrieval=helps,
            baseline_retrieval=other,
        )


def test_one_interval_for_rubric_and_retrieval(tmp_path: Path) -> None:
    """The same per-query deltas give the same interval in both gates (one statistic)."""
    from qmd_ft.retrieval import metrics

    deltas = [0.1 * ((i * 7) % 5) - 0.15 for i in range(25)]
    qs = [f"q{i}" for i in range(25)]
    base = results_doc(dict.fromkeys(qs, 0.5), tmp_path)
    cand = results_doc({q: 0.5 + d for q, d in zip(qs, deltas, strict=True)}, tmp_path)
    rubric = gate(cand, base, bootstrap_samples=3000).rule("rubric_vs_deployed")
    rows_b = [dict.fromkeys(metrics.METRICS, 0.5) for _ in qs]
    rows_c = [dict.fromkeys(metrics.METRICS, 0.5 + d) for d in deltas]
    ret = metrics.compare(rows_c, rows_b, n_resamples=3000)["ndcg@10"]
    assert rubric is not None and rubric.numbers is not None
    assert rubric.numbers.ci_low / 100 == pytest.approx(ret["ci_low"])
    assert rubric.numbers.ci_high / 100 == pytest.approx(ret["ci_high"])


def test_compare_cli_reads_the_verdict(tmp_path: Path) -> None:
    qs = [f"q{i}" for i in range(30)]
    base, cand = tmp_path / "b.json", tmp_path / "c.json"
    write_results(results_doc(dict.fromkeys(qs, 0.4), tmp_path), base)
    write_results(results_doc(dict.fromkeys(qs, 0.6), tmp_path), cand)
    rc = tmp_path / "rc.json"
    rc.write_text(json.dumps(retrieval_doc([0.4] * 30, [0.5] * 30)))
    run = [sys.executable, "-m", "qmd_ft", "compare", str(cand), str(base)]
    out = subprocess.run([*run, "--retrieval-candidate", str(rc)], capture_output=True, text=True)
    assert out.returncode == 1 and "retrieval_vs_raw: ndcg@10 0.400 vs 0.500" in out.stdout
    out = subprocess.run(
        [*run, "--retrieval-candidate", str(rc), "--json"], capture_output=True, text=True
    )
    doc = json.loads(out.stdout)
    assert out.returncode == 1 and doc["passed"] is False
    assert [r["status"] for r in doc["rules"]] == ["pass", "fail", "skipped"]
    assert doc["rules"][1]["numbers"]["mean_delta"] == pytest.approx(-0.1)
    assert Verdict.model_validate(doc).passed is False  # the JSON is the verdict, round-trips
    required = subprocess.run(
        [*run, "--set", "publish.retrieval.required=true"], capture_output=True, text=True
    )
    assert required.returncode == 1 and "no retrieval results" in required.stdout


class SeededFake:
    """A generator contract stand-in: seed 0 writes a good expansion, other seeds a bad one."""

    def __init__(self) -> None:
        self.made: list[tuple[float, int, float, int]] = []

    def generator(self, model, adapters, gen, device=None):
        self.made.append((gen.temperature, gen.top_k, gen.top_p, gen.seed))
        return lambda prompts: [GOOD if gen.seed == 0 else "lex: x" for _ in prompts]


def test_eval_serving_samples_k_seeded_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import qmd_ft.backend
    from qmd_ft.cli import app

    fake = SeededFake()
    monkeypatch.setattr(qmd_ft.backend, "get_backend", lambda name="auto": fake)
    model = tmp_path / "m-Q4_K_M.gguf"
    model.write_bytes(b"GGUF")
    qfile = tmp_path / "q.txt"
    qfile.write_text("# T\ndocker volumes\nrust lifetimes\n")
    args = ["eval", "--model", str(model), "--queries", str(qfile), "--serving", "--json"]
    result = CliRunner().invoke(app, [*args, "--set", "serving.samples=3"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert fake.made == [(0.7, 20, 0.8, 0), (0.7, 20, 0.8, 1), (0.7, 20, 0.8, 2)]
    good = reward.score("docker volumes", GOOD).reward
    bad = reward.score("docker volumes", "lex: x").reward
    row = doc["results"][0]
    assert row["reward"] == pytest.approx((good + 2 * bad) / 3, abs=1e-6)
    assert row["rating"] == reward.score("docker volumes", "lex: x").rating  # 2 of 3 samples
    assert [s["completion"] for s in row["samples"]] == [GOOD, "lex: x", "lex: x"]
    samples = doc["summary"]["samples"]
    assert samples["k"] == 3 and samples["mean_rewards"][1] == samples["mean_rewards"][2]
    assert samples["std"] > 0
    refused = subprocess.run(
        [sys.executable, "-m", "qmd_ft", "eval", "--model", str(tmp_path), "--serving"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1 and "--serving scores the file QMD loads" in refused.stderr
    assert doc["provenance"]["sampling"] == {
        "temperature": 0.7,
        "top_k": 20,
        "top_p": 0.8,
        "samples": 3,
        "seed": 0,
    }


def test_card_shows_both_evals_and_every_rule(tmp_path: Path) -> None:
    from qmd_ft.gate import Interval, RuleResult
    from qmd_ft.publish.card import commit_message, render_card

    qs = ["docker volumes"]
    summary = {
        "n": 1,
        "mean_reward": 0.7,
        "mean_percentage": 70.0,
        "ratings": {"Good": 1},
        "categories": {"T": 0.7},
    }
    sampled = results_doc(
        dict.fromkeys(qs, 0.7),
        tmp_path,
        summary={**summary, "samples": {"k": 3, "mean_rewards": [0.8, 0.7, 0.6], "std": 0.0816}},
        provenance={
            "model": "out/gguf/merged-Q4_K_M.gguf",
            "backend": "gguf",
            "sampling": {"temperature": 0.7, "top_k": 20, "top_p": 0.8, "samples": 3, "seed": 0},
        },
    )
    greedy = results_doc(
        dict.fromkeys(qs, 0.7),
        tmp_path,
        summary={**summary, "mean_reward": 0.75},
        provenance={"model": "out/merged", "backend": "cuda"},
    )
    numbers = Interval(
        candidate=0.61,
        baseline=0.65,
        mean_delta=-0.04,
        ci_low=-0.07,
        ci_high=-0.01,
        wins=3,
        losses=9,
        ties=1,
        n=13,
    )
    verdict = Verdict(
        baseline_source="local:o/r/eval_results.json",
        rules=[
            RuleResult(
                name="retrieval_vs_raw",
                metric="ndcg@10",
                requirement="95% CI lower bound of the ndcg@10 delta > +0.000",
                status="fail",
                reason="lower bound not > +0.000",
                numbers=numbers,
                reported={"recall@10": numbers},
            )
        ],
    )
    card = render_card("o/r", sampled, base_model="b", verdict=verdict, greedy=greedy)
    assert "sampled as QMD serves it: temperature 0.7, top_k 20, top_p 0.8, 3 seeded" in card
    assert "| mean reward per sample run | 0.8000, 0.7000, 0.6000 (sd 0.0816) |" in card
    assert "### Greedy eval of the merged model" in card and "`merged` (cuda), greedy" in card
    assert "## Release gate: REFUSED" in card
    assert "| retrieval_vs_raw | ndcg@10 | 95% CI lower bound" in card
    assert "| 0.610 | 0.650 | -0.040 [-0.070, -0.010] | fail |" in card
    assert "| retrieval_vs_raw | recall@10 | reported |" in card
    assert "ndcg@10 -0.040 vs_raw" in commit_message(sampled, verdict)


def test_a_deployed_eval_generated_differently_is_redone(tmp_path: Path) -> None:
    """A greedy deployed eval is not paired with a sampled candidate: the deployed model is
    evaluated the candidate's way instead (and a matching published eval is used as is)."""
    from qmd_ft.publish.registry import EVAL_FILE, LocalRegistry
    from qmd_ft.publish.release import baseline_results

    reg = LocalRegistry(tmp_path / "reg")
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    greedy = tmp_path / "greedy.json"
    write_results(results_doc({"q": 0.5}, tmp_path), greedy)
    reg.upload("o/r", {EVAL_FILE: greedy, "config.json": model / "config.json"}, "deploy")
    sampling = {"temperature": 0.7, "samples": 3}
    sampled = results_doc({"q": 0.6}, tmp_path, provenance={"sampling": sampling})
    calls: list[Path] = []

    def evaluate(path: Path, candidate: EvalResults) -> EvalResults:
        calls.append(path)
        return results_doc({"q": 0.4}, tmp_path, provenance=candidate.provenance)

    doc, source = baseline_results(reg, "o/r", sampled, evaluate)
    assert calls == [tmp_path / "reg/o/r"] and doc and doc.results[0].reward == 0.4
    assert source == "evaluated deployed model (its eval_results.json was generated differently)"
    doc, source = baseline_results(reg, "o/r", results_doc({"q": 0.6}, tmp_path), evaluate)
    assert len(calls) == 1 and source == "local:o/r/eval_results.json"
