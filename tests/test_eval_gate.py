"""Eval results, re-scoring, and the gate's decisions on constructed results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qmd_ft import reward
from qmd_ft.config import EvalConfig
from qmd_ft.errors import UserError
from qmd_ft.evaluation import (
    build_results,
    evaluate,
    load_results,
    rescore,
    score_row,
    write_results,
)
from qmd_ft.gate import GateRule, compare, paired_bootstrap_ci
from qmd_ft.queries import Query, read_queries

ROOT = Path(__file__).resolve().parents[1]
GOOD = (
    "hyde: Docker volumes keep container data on the host so it survives restarts and rebuilds.\n"
    "lex: docker volume mount\nlex: docker named volumes persistence\n"
    "vec: how do docker volumes persist container data\n"
    "vec: what is the difference between bind mounts and named volumes"
)


def results_doc(points: dict[str, float], tmp_path: Path, rubric: str = "v1") -> dict:
    """A minimal results document with the given per-query rewards (0..1)."""
    return {
        "rubric_version": rubric,
        "results": [{"query": q, "completion": "", "reward": r} for q, r in points.items()],
    }


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
    assert rows[0]["reward"] == reward.score("docker volumes", GOOD).reward
    assert rows[1]["rating"] == "Failed" and rows[1]["category"] == "Short"
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
    s = doc["summary"]
    assert s["n"] == 2 and s["ratings"]["Failed"] == 1
    assert s["mean_reward"] == pytest.approx((rows[0]["reward"] + 0) / 2, abs=1e-6)
    assert set(s["categories"]) == {"Technical", "Short"}
    assert doc["provenance"]["queries_sha256"] and doc["rubric_version"] == "v1"
    path = tmp_path / "r.json"
    write_results(doc, path)
    again = rescore(load_results(path))
    assert again["summary"] == s and again["rescored"]["rows_changed"] == 0


def test_load_results_rejects_non_results(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text('{"a": 1}')
    with pytest.raises(UserError, match="not a qmd-ft results file"):
        load_results(p)
    p.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UserError, match="nested too deeply"):
        load_results(p)


def test_gate_passes_clear_improvement(tmp_path: Path) -> None:
    qs = [f"q{i}" for i in range(40)]
    base = results_doc(dict.fromkeys(qs, 0.5), tmp_path)
    cand = results_doc({q: 0.5 + (0.1 if i % 2 else 0.0) for i, q in enumerate(qs)}, tmp_path)
    r = compare(cand, base, GateRule(bootstrap_samples=2000))
    assert r.passed and r.wins == 20 and r.ties == 20 and r.losses == 0
    assert r.mean_delta == pytest.approx(5.0)
    assert 0 < r.ci[0] < 5.0 < r.ci[1]


def test_gate_fails_equal_and_noisy_regressions(tmp_path: Path) -> None:
    qs = [f"q{i}" for i in range(40)]
    base = results_doc(dict.fromkeys(qs, 0.5), tmp_path)
    same = compare(results_doc(dict.fromkeys(qs, 0.5), tmp_path), base, GateRule())
    assert not same.passed and "not > +0.00" in same.reasons[0]
    # mean slightly positive, but one big loss makes the interval reach far below -0.5
    noisy = {q: 0.52 for q in qs}
    noisy["q0"] = 0.0
    r = compare(results_doc(noisy, tmp_path), base, GateRule(bootstrap_samples=2000))
    assert r.mean_delta > 0 and not r.passed
    assert any("lower bound" in x for x in r.reasons)


def test_gate_refuses_different_queries_or_rubric(tmp_path: Path) -> None:
    a = results_doc({"q1": 0.5}, tmp_path)
    with pytest.raises(UserError, match="query sets differ"):
        compare(a, results_doc({"q2": 0.5}, tmp_path), GateRule())
    with pytest.raises(UserError, match="rubric versions differ"):
        compare(a, results_doc({"q1": 0.5}, tmp_path, rubric="v0"), GateRule())
    twice = results_doc({"q1": 0.5}, tmp_path)
    twice["results"].append({"query": "q1", "completion": "", "reward": 0.9})
    with pytest.raises(UserError, match="'q1' twice"):
        compare(twice, a, GateRule())


def test_queries_file_refuses_a_repeated_query(tmp_path: Path) -> None:
    qfile = tmp_path / "queries.txt"
    qfile.write_text("# A\nrust lifetimes\n# B\ndocker  volumes\nrust   lifetimes\n")
    with pytest.raises(UserError, match=r"queries.txt:5: query 'rust lifetimes' repeats line 2"):
        read_queries(qfile)


def test_bootstrap_is_deterministic_and_brackets_the_mean() -> None:
    d = [float(i % 7) - 3 for i in range(50)]
    assert paired_bootstrap_ci(d, 1000, 0.95) == paired_bootstrap_ci(d, 1000, 0.95)
    lo, hi = paired_bootstrap_ci(d, 1000, 0.95)
    assert lo < sum(d) / len(d) < hi


def test_compare_cli_exit_codes(tmp_path: Path) -> None:
    qs = [f"q{i}" for i in range(30)]
    base, cand = tmp_path / "b.json", tmp_path / "c.json"
    base.write_text(json.dumps(results_doc(dict.fromkeys(qs, 0.4), tmp_path)))
    cand.write_text(json.dumps(results_doc(dict.fromkeys(qs, 0.6), tmp_path)))
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
    row = score_row(Query("docker volumes", "T", 1), GOOD) | {"reward": 0.1}
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


def retrieval_doc(recall10: float) -> dict:
    """A minimal `eval --retrieval` document with the model system's mean metrics."""
    return {"systems": {"model": {"mean": {"recall@10": recall10, "mrr": 0.5}}}}


def test_retrieval_rule_blocks_regressions(tmp_path: Path) -> None:
    from qmd_ft.gate import retrieval_reasons

    assert retrieval_reasons(retrieval_doc(0.80), retrieval_doc(0.80)) == []
    assert retrieval_reasons(retrieval_doc(0.79), retrieval_doc(0.80), max_drop=0.02) == []
    (reason,) = retrieval_reasons(retrieval_doc(0.70), retrieval_doc(0.80))
    assert "recall@10 0.7000 < deployed 0.8000" in reason
    with pytest.raises(UserError, match="not a retrieval results file"):
        retrieval_reasons({}, retrieval_doc(0.8))
    qs = [f"q{i}" for i in range(30)]
    base, cand = tmp_path / "b.json", tmp_path / "c.json"
    base.write_text(json.dumps(results_doc(dict.fromkeys(qs, 0.4), tmp_path)))
    cand.write_text(json.dumps(results_doc(dict.fromkeys(qs, 0.6), tmp_path)))
    rb, rc = tmp_path / "rb.json", tmp_path / "rc.json"
    rb.write_text(json.dumps(retrieval_doc(0.9)))
    rc.write_text(json.dumps(retrieval_doc(0.5)))
    run = [
        sys.executable,
        "-m",
        "qmd_ft",
        "compare",
        str(cand),
        str(base),
        "--retrieval-candidate",
        str(rc),
        "--retrieval-baseline",
        str(rb),
    ]
    out = subprocess.run(run, capture_output=True, text=True)
    assert out.returncode == 1 and "retrieval recall@10" in out.stdout
