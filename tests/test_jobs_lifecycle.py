"""A job's life against the fake Hub: the GPU check, outputs committed while it runs and on
SIGTERM, pulled back here, and a cut training run resumed from its uploaded checkpoint."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
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

    proc = start_like_hf_jobs(spec, hub, tmp_path)
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


def start_like_hf_jobs(spec: dict, hub: FakeHub, tmp: Path) -> subprocess.Popen[str]:
    """The job running in the background as HF runs it (its own session: killable as one)."""
    return subprocess.Popen(
        [sys.executable, "-c", "import test_jobs_lifecycle as t; t.run()"],
        env={**os.environ, "SPEC": repr((spec, hub.url, str(tmp)))},
        cwd=Path(__file__).parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip


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
    os.chdir(tempfile.mkdtemp(dir=tmp, prefix="container-"))  # a fresh machine
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


@pytest.mark.slow
def test_a_cut_training_job_is_pulled_and_resumed(
    hub: FakeHub, tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`train --hf-jobs` on the tiny model, cut by SIGTERM after its first checkpoint went up:
    the checkpoint is pulled here, and `--resume-from JOB` finishes the run from it."""
    for module in ("torch", "trl", "peft"):
        pytest.importorskip(module)
    from qmd_ft.data.prepare import prepare

    proj = make_project(tmp_path)
    monkeypatch.chdir(proj)
    prepare([Path("data/technical.jsonl")], Path("data/train"), None)
    monkeypatch.setenv(SYNC_ENV, "1")
    # 300 short steps, a checkpoint every 100: the cut lands after checkpoint-100 went up with
    # ~200 steps to spare, however fast the machine (3 steps once finished before the signal).
    sets = [f"model.base={tiny_model_dir}", "training.batch_size=2", "training.save_steps=100",
            "lora.target_modules=[q_proj]", "model.output=outputs/job-sft"]  # fmt: skip
    args = ["train", "sft", "--config", "configs/sft.yaml", "--max-steps", "300",
            *(t for kv in sets for t in ("--set", kv)),
            "--hf-jobs", "--flavor", "cpu-basic"]  # fmt: skip
    first = cli(*args, hub=hub, tmp=tmp_path, cwd=proj)
    assert first.returncode == 0, first.stderr
    job_id = first.stdout.split()[1]
    spec = hub.state.job_specs[job_id]
    assert "--device cpu" in spec["environment"]["QMD_FT_COMMAND"]
    folder = spec["environment"]["QMD_FT_JOB_FOLDER"]
    ckpt = f"{folder}/outputs/outputs/job-sft/checkpoint-100/trainer_state.json"
    proc = start_like_hf_jobs(spec, hub, tmp_path)
    try:
        deadline = time.monotonic() + 600
        while ckpt not in hub.state.repos[JOBS_REPO] and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()  # type: ignore[union-attr]
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, out
    assert "checkpoint-300" not in " ".join(hub.state.repos[JOBS_REPO]), "it was cut"

    pulled = cli("jobs", "pull", job_id, hub=hub, tmp=tmp_path, cwd=proj)
    assert pulled.returncode == 0, pulled.stderr
    assert (proj / "outputs/job-sft/checkpoint-100/trainer_state.json").is_file()

    again = cli(*args, "--resume-from", job_id, hub=hub, tmp=tmp_path, cwd=proj)
    assert again.returncode == 0, again.stderr
    spec2 = hub.state.job_specs[again.stdout.split()[1]]
    assert spec2["environment"]["QMD_FT_COMMAND"].endswith("--resume")
    done = run_like_hf_jobs(spec2, hub, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resuming from outputs/job-sft/checkpoint-" in done.stdout + done.stderr
    folder2 = spec2["environment"]["QMD_FT_JOB_FOLDER"]
    files = hub.state.repos[JOBS_REPO]
    assert f"{folder2}/outputs/outputs/job-sft/adapter_config.json" in files
    state = files[f"{folder2}/outputs/outputs/job-sft/trainer_state.json"]
    assert json.loads(state)["global_step"] == 300


def test_the_fake_hub_refuses_what_the_jobs_api_refuses(hub: FakeHub) -> None:
    """So a check missing on our side fails the tests, as it would fail on the Hub."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=hub.url, token=test_jobs.TOKEN)
    for kwargs in ({"flavor": "a10g-huge"}, {"flavor": "cpu-basic", "timeout": "0.001s"}):
        with pytest.raises(HfHubHTTPError) as err:
            api.run_job(image="python:3.12", command=["true"], namespace="user", **kwargs)
        assert err.value.response.status_code == 400
    assert hub.state.jobs == {}
