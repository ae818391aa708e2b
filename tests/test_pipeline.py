"""The pipeline end to end on the tiny model (cuda backend on CPU): resumable, gated, dry-run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qmd_ft.pipeline import STATE_FILE, StageResult, build_pipeline

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("trl")


def make(tmp: Path, tiny: Path, *extra: str, dry_run: bool = False):
    return build_pipeline(
        ROOT / "configs/demo/pipeline.yaml",
        [
            f"pipeline.out={tmp / 'run'}",
            f"publish.registry={tmp / 'reg'}",
            "export.quants=[f16]",
            *extra,
        ],
        "cuda",
        device="cpu",
        max_steps=2,
        base_model=str(tiny),
        dry_run=dry_run,
        log=lambda _: None,
    )


def run(pipe) -> dict[str, StageResult]:
    out: dict[str, StageResult] = {}
    pipe.run(pipe.cfg.pipeline.stages, lambda r: out.__setitem__(r.name, r))
    return out


def test_pipeline_runs_skips_and_reruns_what_changed(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    first = run(make(tmp_path, tiny_model_dir))
    assert list(first) == [
        "prepare",
        "sft",
        "grpo",
        "merge",
        "eval",
        "compare",
        "publish",
        "gguf",
        "publish_gguf",
    ]
    assert not any(r.skipped for r in first.values())
    assert first["compare"].key.endswith("first release")
    reg = tmp_path / "reg" / "local/qmd-query-expansion-tiny"
    assert (reg / "config.json").is_file() and (reg / "eval_results.json").is_file()
    assert any((tmp_path / "reg" / "local/qmd-query-expansion-tiny-gguf").glob("*.gguf"))
    state = json.loads((tmp_path / "run" / STATE_FILE).read_text())
    assert all(v["status"] == "done" for k, v in state.items() if k in ("sft", "grpo", "eval"))

    again = run(make(tmp_path, tiny_model_dir))
    assert all(again[s].skipped for s in ("prepare", "sft", "grpo", "merge", "eval", "gguf"))

    changed = run(make(tmp_path, tiny_model_dir, "eval.max_new_tokens=64"))
    assert all(changed[s].skipped for s in ("prepare", "sft", "grpo", "merge"))
    assert not changed["eval"].skipped
    # the same model evaluated again does not beat itself: the gate holds the release back
    assert "FAIL" in changed["compare"].key
    assert changed["publish"].key.startswith("skipped")


def test_interrupted_training_stage_resumes(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    pipe = make(tmp_path, tiny_model_dir, "pipeline.stages=[prepare]")
    run(pipe)
    req = pipe.begin_training("sft", "h1", pipe.sft_cfg)
    assert not req.resume
    again = make(tmp_path, tiny_model_dir)
    again.load_state()
    assert again.begin_training("sft", "h1", again.sft_cfg).resume  # same inputs: continue
    stale = Path(again.sft_cfg.model.output) / "checkpoint-1"
    stale.mkdir(parents=True)
    assert not again.begin_training("sft", "h2", again.sft_cfg).resume  # new inputs: start over
    assert not stale.exists()


def test_dry_run_uploads_nothing(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    results = run(make(tmp_path, tiny_model_dir, dry_run=True))
    assert results["publish"].key.startswith("dry run")
    assert results["publish_gguf"].key.startswith("dry run")
    assert not (tmp_path / "reg").exists()
