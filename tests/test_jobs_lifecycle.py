"""A job's life against the fake Hub: the GPU check, outputs committed while it runs and on
SIGTERM, pulled back here, and a cut training run resumed from its uploaded checkpoint."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_jobs
from fake_hub import FakeHub
from test_jobs import JOBS_REPO, cli, make_project, run_like_hf_jobs

from qmd_ft.cli.jobs_cmd import SYNC_ENV, submit_cli_job

hub, wheel = test_jobs.hub, test_jobs.wheel  # the fake Hub and the session's wheel, as fixtures

PREPARE = ["data", "prepare", "--data", "data/*.jsonl", "--evals", "evals/queries.txt"]
PREPARE += ["--out", "data/prepared"]


def test_a_gpu_flavor_without_cuda_fails_at_once(
    hub: FakeHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(make_project(tmp_path))
    job = submit_cli_job([*PREPARE, "--hf-jobs"], None, flavor="a10g-largex2", timeout="10m")
    spec = hub.state.job_specs[job.id]
    start = time.monotonic()
    done = run_like_hf_jobs(spec, hub, tmp_path, gpus=1)
    assert done.returncode == 1 and time.monotonic() - start < 30
    assert "flavor a10g-largex2 promises 2 GPU(s) but nvidia-smi shows 1" in done.stdout
    assert "shim: installed" not in done.stdout  # nothing downloaded or installed first
    ok = run_like_hf_jobs(spec, hub, tmp_path, gpus=2)
    assert ok.returncode == 0, ok.stdout + ok.stderr


CHILD = """
import pathlib, signal, sys, time
out = pathlib.Path("outputs/run")

def saved(*_):  # as the Trainer does on SIGTERM: save what it has, then stop
    (out / "interrupted.txt").write_text("saved on SIGTERM")
    sys.exit(143)

signal.signal(signal.SIGTERM, saved)
(out / "checkpoint-1").mkdir(parents=True)
(out / "checkpoint-1" / "trainer_state.json").write_text("{}")
time.sleep(4)
(out / "checkpoint-2").mkdir()
(out / "checkpoint-2" / "trainer_state.json").write_text("{}")
time.sleep(600)
"""


def test_outputs_are_committed_while_it_runs_and_on_sigterm(
    hub: FakeHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proj = make_project(tmp_path)
    monkeypatch.chdir(proj)
    monkeypatch.setenv(SYNC_ENV, "1")
    job = submit_cli_job([*PREPARE, "--hf-jobs"], None, flavor="cpu-basic", timeout="10m")
    spec = hub.state.job_specs[job.id]
    folder, pinned = spec["command"][-2:]
    # the command stands in for a long training run: a checkpoint, then another, then it hangs
    snapshot = hub.state.snapshots[JOBS_REPO][pinned]
    script = snapshot[f"{folder}/job.py"].decode()
    real = '[str(python), "-m", "qmd_ft", *COMMAND]'
    assert real in script
    snapshot[f"{folder}/job.py"] = script.replace(real, f"[str(python), '-c', {CHILD!r}]").encode()

    proc = subprocess.Popen([sys.executable, "-c", "import test_jobs_lifecycle as t; t.run()"],
                            env={**os.environ, "SPEC": repr((spec, hub.url, str(tmp_path)))},
                            cwd=Path(__file__).parent, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        watch(proc, hub, folder, job.id, proj, tmp_path)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the job and its command, on any failure


def watch(
    proc: subprocess.Popen[str], hub: FakeHub, folder: str, job_id: str, proj: Path, tmp: Path
) -> None:
    first = f"{folder}/outputs/outputs/run/checkpoint-1/trainer_state.json"
    second = f"{folder}/outputs/outputs/run/checkpoint-2/trainer_state.json"
    deadline = time.monotonic() + 120
    while second not in hub.state.repos[JOBS_REPO] and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()  # type: ignore[union-attr]
        time.sleep(0.2)
    assert first in hub.state.repos[JOBS_REPO] and second in hub.state.repos[JOBS_REPO]
    assert any("outputs (periodic)" in m for m in hub.state.commits[JOBS_REPO])
    proc.send_signal(signal.SIGTERM)  # a timeout or `jobs cancel`
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    # what the command saved on its way out is committed after it exits
    assert hub.state.commits[JOBS_REPO][-1].endswith("outputs (exit 143)")
    last = hub.state.repos[JOBS_REPO][f"{folder}/outputs/outputs/run/interrupted.txt"]
    assert last == b"saved on SIGTERM"
    pulled = cli("jobs", "pull", job_id, hub=hub, tmp=tmp, cwd=proj)
    assert pulled.returncode == 0, pulled.stderr
    assert (proj / "outputs/run/checkpoint-2/trainer_state.json").read_text() == "{}"


def run() -> None:
    """In a child process: run the job as HF would, and pass its exit code on."""
    import ast

    spec, url, tmp = ast.literal_eval(os.environ["SPEC"])
    env = {"PATH": f"{tmp}/bin:/usr/bin:/bin", "HOME": tmp, "HF_HOME": f"{tmp}/.hf",
           "HF_ENDPOINT": url, "HF_HUB_DISABLE_XET": "1", **spec["environment"],
           **spec["secrets"]}  # fmt: skip
    from test_jobs import write_uv_shim

    if not Path(tmp, "bin").exists():
        write_uv_shim(Path(tmp, "bin"))
    container = Path(tmp, "container-sigterm")
    container.mkdir()
    os.chdir(container)
    os.execvpe(spec["command"][0], spec["command"], env)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--flavor", "a10g-largex4"], "--backend cuda --device cuda --gpus 4"),
        (["--flavor", "cpu-basic"], "--backend cuda --device cpu"),
        (["--flavor", "h200x8", "--gpus", "2"], "--gpus 2 --backend cuda --device cuda"),
        (["--flavor", "a10g-large", "--gpus", "4"], "error: --gpus 4: flavor a10g-large has 1"),
        (["--flavor", "cpu-basic", "--device", "cuda"], "error: --device cuda: flavor cpu-basic"),
        (["--timeout", "1.5"], "error: --timeout '1.5'"),
        (["--backend", "mlx"], "error: --hf-jobs runs the cuda backend"),
    ],
)
def test_train_hardware_is_checked_at_submit(
    hub: FakeHub,
    tmp_path: Path,
    flags: list[str],
    expected: str,
) -> None:
    """The job trains on the flavor's hardware, or nothing is uploaded at all."""
    proj = make_project(tmp_path)
    args = ["train", "sft", "--config", "configs/sft.yaml", "--hf-jobs", "--dry-run", *flags]
    r = cli(*args, hub=hub, tmp=tmp_path, cwd=proj)
    if expected.startswith("error:"):
        assert r.returncode == 1 and r.stderr.startswith(expected), r.stderr
        assert r.stderr.count("\n") == 1
    else:
        assert r.returncode == 0, r.stderr
        assert expected in r.stdout, r.stdout
    assert hub.state.requests == []
