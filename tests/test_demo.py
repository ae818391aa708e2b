"""`qmd-ft demo`: the whole job on the tiny model, on both backends; real learning (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def demo(tmp: Path, *args: str) -> dict:
    """Run the demo CLI; return its stdout, which must be the JSON object and nothing else."""
    out = subprocess.run(
        [sys.executable, "-m", "qmd_ft", "demo", "--out", str(tmp / "demo"), "--json", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


@pytest.mark.parametrize("backend", ["cuda", "mlx"])
def test_demo_smoke_runs_every_stage(tmp_path: Path, backend: str) -> None:
    pytest.importorskip("trl" if backend == "cuda" else "mlx_lm")
    report = demo(tmp_path, "--backend", backend, "--max-steps", "2")
    keys = {"score_before", "score_after", "seconds", "artifacts", "released"}
    keys |= {"retrieval_raw", "retrieval_before", "retrieval_after"}
    assert keys <= set(report)
    for system in ("retrieval_raw", "retrieval_before", "retrieval_after"):
        assert set(report[system]) == {"recall@10", "ndcg@10"}
        assert all(0.0 <= v <= 1.0 for v in report[system].values())
    # the released flag, the verdict and the registry agree
    gate = report["gate"]
    assert report["released"] == gate["passed"]
    assert [r["name"] for r in gate["rules"]] == [
        "rubric_vs_deployed",
        "retrieval_vs_raw",
        "retrieval_vs_deployed",
    ]
    vs_raw = gate["rules"][1]["numbers"]
    assert vs_raw["candidate"] == pytest.approx(report["retrieval_after"]["ndcg@10"], abs=1e-4)
    assert vs_raw["baseline"] == pytest.approx(report["retrieval_raw"]["ndcg@10"], abs=1e-4)
    vs_deployed = gate["rules"][2]["numbers"]
    assert vs_deployed["baseline"] == pytest.approx(report["retrieval_before"]["ndcg@10"], abs=1e-4)
    stages_by_name = {s["stage"]: s for s in report["stages"]}
    if not report["released"]:
        assert stages_by_name["publish"]["key"] == "skipped: gate refused"
        assert stages_by_name["publish_gguf"]["key"].startswith("skipped")
    stages = [s["stage"] for s in report["stages"]]
    assert stages == [
        "prepare",
        "sft",
        "grpo",
        "merge",
        "gguf",
        "eval",
        "compare",
        "publish",
        "publish_gguf",
    ]
    assert Path(report["artifacts"]["eval_before"]).is_file()
    assert any(Path(report["artifacts"]["gguf"]).glob("*.gguf"))


@pytest.mark.slow
def test_demo_shows_real_learning(tmp_path: Path) -> None:
    """The full demo config: untrained ~0, trained >= 0.6 mean reward on evals/queries.txt."""
    pytest.importorskip("trl")
    report = demo(tmp_path, "--backend", "cuda")
    assert report["score_before"] < 0.1
    assert report["score_after"] >= 0.6, report
    registry = tmp_path / "demo" / "registry" / "local" / "qmd-query-expansion-tiny"
    deployed = json.loads((registry / "eval_results.json").read_text())["summary"]["mean_reward"]
    # released: the registry holds the trained model's eval; refused: still the untrained one's
    expected = report["score_after"] if report["released"] else report["score_before"]
    assert deployed == pytest.approx(expected, abs=1e-4)
    assert report["released"] == all(r["status"] != "fail" for r in report["gate"]["rules"])


def test_demo_gate_has_the_pipeline_rules() -> None:
    """The demo's gate is the real one: configs/demo/pipeline.yaml repeats its rules."""
    from qmd_ft.config import load_config

    def rules(path: str) -> dict:
        publish = load_config(ROOT / path).publish
        return publish.model_dump(exclude={"repo", "gguf_repo", "registry", "private"})

    assert rules("configs/demo/pipeline.yaml") == rules("configs/pipeline.yaml")
    assert load_config(ROOT / "configs/pipeline.yaml").publish.retrieval.required
