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
    assert {"score_before", "score_after", "seconds", "artifacts"} <= set(report)
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
    assert json.loads((registry / "eval_results.json").read_text())["summary"][
        "mean_reward"
    ] == pytest.approx(report["score_after"], abs=1e-4)
