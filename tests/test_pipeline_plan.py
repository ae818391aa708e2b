"""The pipeline before it runs: `--dry-run` plans and writes nothing, and both training stages
are checked (as `qmd-ft train` checks them) before the first one trains."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qmd_ft.errors import UserError
from qmd_ft.gguf.runtime import runtime_available
from qmd_ft.pipeline import STATE_FILE, build_pipeline

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("trl")

SETTINGS = ["export.quants=[f16]", *([] if runtime_available() else ["export.verify=false"])]


def make(tmp: Path, tiny: Path, *extra: str):
    return build_pipeline(
        ROOT / "configs/demo/pipeline.yaml",
        [f"pipeline.out={tmp / 'run'}", f"publish.registry={tmp / 'reg'}", *SETTINGS, *extra],
        "cuda",
        device="cpu",
        max_steps=2,
        base_model=str(tiny),
        log=lambda _: None,
    )


def tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_dry_run_prints_the_plan_and_writes_nothing(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    make(tmp_path, tiny_model_dir, "pipeline.stages=[prepare]").run(["prepare"], lambda _: None)
    before = tree(tmp_path)
    sets = [
        f"pipeline.out={tmp_path / 'run'}",
        f"publish.registry={tmp_path / 'reg'}",
        *SETTINGS,
    ]
    r = subprocess.run(
        [sys.executable, "-m", "qmd_ft", "pipeline", "--config", "configs/demo/pipeline.yaml",
         "--dry-run", "--backend", "cuda", "--device", "cpu", "--model", str(tiny_model_dir),
         *(a for s in sets for a in ("--set", s))],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert tree(tmp_path) == before  # nothing written, nothing touched
    run = tmp_path / "run"
    out = r.stdout
    assert f"pipeline (cuda) -> {run}" in out
    assert f"sft: {tiny_model_dir} (full fine-tuning)" in out  # the resolved configs' facts
    assert f"LoRA r4, beta 0.04, 4 generations/prompt) on {run / 'data'}" in out
    assert f"on {tmp_path / 'reg'}" in out and "local/qmd-query-expansion-tiny-gguf" in out
    plan = out.split("plan:\n", 1)[1].splitlines()
    assert plan[0] == f"  prepare: unchanged, skipped -> {run / 'data'}"  # per the state file
    assert plan[1] == f"  sft: runs -> {run / 'sft'}"
    assert [line.split(":")[0].strip() for line in plan] == [
        "prepare", "sft", "grpo", "merge", "gguf", "eval", "compare", "publish", "publish_gguf"
    ]  # fmt: skip
    assert plan[-2].startswith("  publish: uploads if the gate passes")
    assert not (tmp_path / "reg").exists() and not (run / "sft").exists()

    no_publish = subprocess.run(
        [sys.executable, "-m", "qmd_ft", "pipeline", "--config", "configs/demo/pipeline.yaml",
         "--dry-run", "--no-publish", "--backend", "cuda", "--device", "cpu",
         "--model", str(tiny_model_dir), *(a for s in sets for a in ("--set", s))],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert "  publish: uploads nothing (--no-publish)" in no_publish.stdout, no_publish.stderr
    assert tree(tmp_path) == before


def test_a_grpo_batch_error_stops_the_pipeline_before_it_is_built(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    bad = ["grpo:training.batch_size=3", "grpo:training.gradient_accumulation_steps=1"]
    with pytest.raises(UserError) as e:
        make(tmp_path, tiny_model_dir, *bad)
    assert "configs/demo/grpo.yaml" in str(e.value)
    assert "training.batch_size (3)" in str(e.value) and "grpo.num_generations (4)" in str(e.value)
    assert not (tmp_path / "run").exists()


def test_a_grpo_check_fails_the_run_before_sft_trains(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GRPO problem only the backend's check finds (its prompt field) stops the run before
    any stage runs, so no SFT output (nor prepared data) exists."""
    monkeypatch.chdir(ROOT)
    pipe = make(tmp_path, tiny_model_dir, "grpo:dataset.prompt_field=text")
    with pytest.raises(UserError, match=r"dataset\.prompt_field 'text'"):
        pipe.run(pipe.cfg.pipeline.stages, lambda _: None)
    assert not (tmp_path / "run" / "sft").exists() and not (tmp_path / "run" / "data").exists()


def test_stale_training_output_is_checked_as_the_empty_dir_it_becomes(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """begin_training removes a stage's output left by other inputs, so its checkpoints are
    no reason to refuse; a cut run of the same inputs resumes, and its step budget is checked."""
    monkeypatch.chdir(ROOT)
    stale = tmp_path / "run" / "grpo" / "checkpoint-5"
    stale.mkdir(parents=True)
    (stale / "trainer_state.json").write_text(json.dumps({"global_step": 5, "max_steps": 9}))
    pipe = make(tmp_path, tiny_model_dir)
    planned = pipe.plan(["sft", "grpo"])
    assert [p.runs for p in planned] == [True, True]
    pipe.check(planned)  # no "already holds checkpoint-5"
    assert stale.is_dir()  # and nothing removed by checking

    grpo = planned[1]
    state = {"grpo": {"status": "running", "inputs": grpo.inputs}}
    (tmp_path / "run" / STATE_FILE).write_text(json.dumps(state))
    again = make(tmp_path, tiny_model_dir)
    planned = again.plan(["sft", "grpo"])
    assert planned[1].note == "resumes its cut run"
    with pytest.raises(UserError, match="planned for 9 steps"):  # --max-steps 2 here
        again.check(planned)
