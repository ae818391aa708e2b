"""Faults a user can cause, each ending in one line that says what to do, with nothing lost:
a diverged run, a checkpoint or pipeline state cut mid-write, a full disk."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cuda_support import EXAMPLES, write_examples
from typer.testing import CliRunner

from qmd_ft.data.prepare import INFO_FILE
from qmd_ft.errors import UserError
from qmd_ft.finite import check_finite
from qmd_ft.resume import latest_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def one_line(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    for needle in needles:
        assert needle in r.stderr, r.stderr


def trained(out: Path, losses: list[float]) -> Path:
    """An output dir as both backends leave it: trainer_state.json (log) and a manifest."""
    from qmd_ft.manifest import write_manifest

    out.mkdir(parents=True, exist_ok=True)
    log = [{"step": i + 1, "loss": v, "grad_norm": 1.0} for i, v in enumerate(losses)]
    (out / "trainer_state.json").write_text(json.dumps({"log_history": log}))
    write_manifest(out, "sft-adapter", extra={"metrics": {"global_step": len(losses)}})
    return out


def test_check_finite(tmp_path: Path) -> None:
    check_finite(trained(tmp_path / "ok", [2.0, 1.5]))
    for bad in (float("nan"), float("inf")):
        with pytest.raises(UserError, match=r"training diverged: loss became .* at step 2"):
            check_finite(trained(tmp_path / str(bad), [2.0, bad, 1.0]))


def test_a_diverged_run_fails_the_train_command(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend returns normally (as transformers does on NaN): the command still fails."""
    from qmd_ft.cli import app, train_cmd

    class Diverging:
        """A backend whose checks pass and whose SFT ends normally with a NaN loss logged."""

        def check(self, stage, req, processes=1, sft_pending=False):
            return None

        def sft(self, req):
            return trained(req.output_dir, [2.0, float("nan")])

    monkeypatch.setattr(train_cmd, "get_backend", lambda name: Diverging())
    monkeypatch.chdir(project)
    model = tmp_path / "base"
    model.mkdir()
    r = CliRunner().invoke(app, ["train", "sft", "--backend", "cuda", "--model", str(model)])
    assert r.exit_code == 1 and isinstance(r.exception, UserError), r.output
    assert "training diverged" in str(r.exception) and "trained sft" not in r.output


def test_an_unreadable_checkpoint_is_skipped_with_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for step, state in ((2, '{"global_step": 2}'), (4, '{"global_step": 4, "log_hi'), (6, None)):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        if state is not None:
            (d / "trainer_state.json").write_text(state)
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
    err = capsys.readouterr().err
    assert "skipping" in err and "checkpoint-4" in err and "unreadable" in err


def test_resume_skips_a_cut_checkpoint(project: Path) -> None:
    from test_train import cli, prepared

    prepared(project)
    out = project / "outputs" / "sft"
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2, "max_steps": 6}')
    (out / "checkpoint-4").mkdir()
    (out / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4, "max_st')
    r = cli("sft", "--dry-run", "--resume", "--max-steps", "7", cwd=project)
    assert r.returncode == 1
    *notes, error = r.stderr.splitlines()
    assert notes and all("skipping" in n and "checkpoint-4" in n for n in notes), r.stderr
    assert error.startswith("error:") and "checkpoint-2" in error and "planned for 6" in error


def test_a_cut_pipeline_state_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "pipeline_state.json").write_text('{"prepare": {"status": "do')
    r = subprocess.run(
        [sys.executable, "-m", "qmd_ft", "pipeline",
         "--config", str(ROOT / "configs/pipeline.yaml"),
         "--set", f"pipeline.out={out}", "--set", "pipeline.stages=[prepare]"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    one_line(r, "pipeline_state.json", "unreadable pipeline state")


DISK_FULL = textwrap.dedent(
    """
    import errno, os, shutil, sys
    import qmd_ft.atomic, qmd_ft.publish.registry as registry

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    os.fsync = full          # every atomic write hits the full disk when it syncs
    shutil.copyfile = full   # and so does copying a release into the registry
    from qmd_ft.cli import main
    sys.argv = ["qmd-ft", *sys.argv[1:]]
    main()
    """
)


def test_disk_full_in_data_prepare_keeps_the_old_splits(project: Path) -> None:
    with contextlib.chdir(project):
        ok = subprocess.run(
            [sys.executable, "-m", "qmd_ft", "data", "prepare", "--data", "data/examples.jsonl",
             "--out", "data/train"], capture_output=True, text=True,
        )  # fmt: skip
        assert ok.returncode == 0, ok.stderr
        before = {p.name: p.read_bytes() for p in (project / "data/train").iterdir()}
        write_examples(project / "data" / "examples.jsonl", EXAMPLES[:-1])
        r = subprocess.run(
            [sys.executable, "-c", DISK_FULL, "data", "prepare", "--data", "data/examples.jsonl",
             "--out", "data/train"], capture_output=True, text=True,
        )  # fmt: skip
    one_line(r, "no space left on device", "run the same command again")
    after = {p.name: p.read_bytes() for p in (project / "data/train").iterdir()}
    # the splits are the old ones, whole, and nothing cut or temporary is left; the info file
    # that marks the dir prepared is gone, so the next `train` prepares it again
    assert after == {k: v for k, v in before.items() if k != INFO_FILE}


def test_disk_full_mid_publish_keeps_the_deployed_release(tmp_path: Path) -> None:
    from test_publish import REPO, make_model, make_results, publish

    reg = tmp_path / "reg"
    m1 = make_model(tmp_path, "m1", "one")
    assert publish("--model", str(m1), "--eval", str(make_results(tmp_path, m1, 0.5, "r1.json")),
                   "--registry", str(reg)).returncode == 0  # fmt: skip
    before = (reg / REPO / "model.safetensors").read_bytes()
    m2 = make_model(tmp_path, "m2", "two")
    r2 = make_results(tmp_path, m2, 0.7, "r2.json")
    r = subprocess.run(
        [sys.executable, "-c", DISK_FULL, "publish", "--model", str(m2), "--eval", str(r2),
         "--registry", str(reg)], capture_output=True, text=True,
    )  # fmt: skip
    one_line(r, "no space left on device")
    assert (reg / REPO / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in (reg / "tobil").iterdir()) == [
        ".qmd-query-expansion-1.7B.lock", "qmd-query-expansion-1.7B"
    ]  # fmt: skip


def test_disk_full_error_lines() -> None:
    """Full disk: one line with what to do, named file or not, also wrapped by a library."""
    import errno

    from qmd_ft.cli import error_line

    line = error_line(OSError(errno.ENOSPC, "No space left on device"))
    assert line == "no space left on device: free some space, then run the same command again"
    named = error_line(OSError(errno.ENOSPC, "No space left on device", "out/x.gguf"))
    assert named is not None and named.startswith("out/x.gguf: no space left on device")
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as e:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0") from e
    except RuntimeError as wrapped:
        assert error_line(wrapped) == line
    rust = RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")
    assert error_line(rust) == line
    assert error_line(RuntimeError("a bug")) is None


def test_out_of_memory_and_interrupt_lines(tmp_path: Path) -> None:
    from qmd_ft.cli import error_line

    cuda = RuntimeError("CUDA out of memory. Tried to allocate 80.00 GiB")
    host = RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9 TB")
    for e in (MemoryError(), cuda, host):
        line = error_line(e)
        assert line is not None and line.startswith("out of memory: lower training.batch_size")
    interrupt = "import sys; from qmd_ft.cli import main, app\n"
    interrupt += "def boom(*a, **k): raise KeyboardInterrupt\n"
    interrupt += "import qmd_ft.cli as c; c.app = boom; sys.argv = ['qmd-ft']; main()"
    r = subprocess.run([sys.executable, "-c", interrupt], capture_output=True, text=True)
    assert r.returncode == 130 and r.stderr.startswith("interrupted:"), r.stderr
    assert r.stderr.count("\n") == 1
