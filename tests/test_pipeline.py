"""The pipeline end to end on the tiny model (cuda backend on CPU): resumable, gated, dry-run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qmd_ft.pipeline import STATE_FILE, StageResult, build_pipeline, gate_refused
from qmd_ft.queries import read_queries

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("trl")


def make(tmp: Path, tiny: Path, *extra: str, dry_run: bool = False, events=None):
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
        on_progress=None if events is None else lambda *e: events.append(e),
    )


def run(pipe) -> dict[str, StageResult]:
    out: dict[str, StageResult] = {}
    pipe.run(pipe.cfg.pipeline.stages, lambda r: out.__setitem__(r.name, r))
    return out


def test_pipeline_runs_skips_and_reruns_what_changed(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    events: list[tuple[str, int, int]] = []
    first = run(make(tmp_path, tiny_model_dir, events=events))
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
    assert not gate_refused(list(first.values()))
    # the long stages report progress: every eval query, then each GGUF step
    n = len(read_queries(ROOT / "evals/queries.txt"))
    assert ("evaluating", n, n) in events
    assert any(what.startswith("writing") and done == total > 0 for what, done, total in events)
    reg = tmp_path / "reg" / "local/qmd-query-expansion-tiny"
    assert (reg / "config.json").is_file() and (reg / "eval_results.json").is_file()
    assert any((tmp_path / "reg" / "local/qmd-query-expansion-tiny-gguf").glob("*.gguf"))
    state = json.loads((tmp_path / "run" / STATE_FILE).read_text())
    assert all(v["status"] == "done" for k, v in state.items() if k in ("sft", "grpo", "eval"))

    again = run(make(tmp_path, tiny_model_dir))
    assert all(again[s].skipped for s in ("prepare", "sft", "grpo", "merge", "eval", "gguf")), again

    changed = run(make(tmp_path, tiny_model_dir, "eval.max_new_tokens=64"))
    assert all(changed[s].skipped for s in ("prepare", "sft", "grpo", "merge"))
    assert not changed["eval"].skipped
    # the same model evaluated again does not beat itself: the gate holds the release back
    assert "FAIL" in changed["compare"].key
    assert changed["publish"].key.startswith("skipped")
    assert gate_refused(list(changed.values()))  # `qmd-ft pipeline` exits 1 on this


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


def test_set_reaches_the_stage_configs_and_the_wiring_wins(tmp_path: Path, tiny_model_dir: Path):
    pipe = make(
        tmp_path,
        tiny_model_dir,
        "training.max_steps=3",
        "sft:training.learning_rate=0.01",
        "grpo:lora.rank=2",
        f"model.output={tmp_path / 'elsewhere'}",
    )
    sft, grpo = pipe.sft_cfg, pipe.grpo_cfg
    assert sft.training.max_steps == grpo.training.max_steps == pipe.cfg.training.max_steps == 3
    assert sft.training.learning_rate == 0.01 != grpo.training.learning_rate
    assert grpo.lora is not None and grpo.lora.rank == 2
    assert sft.lora is None or sft.lora.rank != 2
    assert sft.model.output == str(tmp_path / "run" / "sft")  # the pipeline's own layout
    assert grpo.model.sft == str(tmp_path / "run" / "sft")
    assert sft.model.base == grpo.model.base == str(tiny_model_dir)


def test_cli_exits_1_when_the_gate_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from qmd_ft.cli import app, pipeline_cmd

    class Refused:
        backend, out = "cuda", Path("run")
        cfg = type("C", (), {"pipeline": type("P", (), {"stages": ["compare", "publish"]})})

        def run(self, stages, on_stage) -> None:
            on_stage(StageResult("compare", None, "-1.00 points, FAIL: mean delta <= 0"))
            on_stage(StageResult("publish", None, "skipped: gate failed"))

    monkeypatch.setattr(pipeline_cmd, "build_pipeline", lambda *a, **k: Refused())
    result = CliRunner().invoke(app, ["pipeline"])
    assert result.exit_code == 1 and "gate refused" in result.output
