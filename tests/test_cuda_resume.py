"""`--resume`: a CPU run killed mid-way continues from its checkpoint to the same end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("trl")

from cuda_support import log_history, prepared
from safetensors.torch import load_file

from qmd_ft.backend import TrainRequest
from qmd_ft.backends.cuda.sft import run_sft
from qmd_ft.config import load_config

STEPS = 40


def test_killed_sft_resumes_to_the_same_step_and_weights(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = prepared(tmp_path)
    config = tmp_path / "sft.yaml"
    config.write_text(
        f"model: {{base: {tiny_model_dir}}}\n"
        f"dataset: {{name: {data}}}\n"
        "training: {batch_size: 2, learning_rate: 0.005, save_steps: 5, logging_steps: 5,\n"
        "           warmup_ratio: 0.1, lr_scheduler: cosine}\n"
        "lora: {rank: 4, alpha: 8}\n"
    )
    cut = tmp_path / "cut"
    cmd = [
        sys.executable, "-m", "qmd_ft", "train", "sft", "--config", str(config),
        "--device", "cpu", "--max-steps", str(STEPS), "--output", str(cut),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    first = cut / "checkpoint-5" / "trainer_state.json"
    deadline = time.monotonic() + 300
    while not first.is_file():
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (cut / "manifest.json").exists(), "the run finished before it was killed"

    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 1 and "pass --resume" in again.stderr

    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout
    state = json.loads((cut / "trainer_state.json").read_text())
    assert state["global_step"] == STEPS
    assert json.loads((cut / "manifest.json").read_text())["metrics"]["global_step"] == STEPS

    # The same run without the interruption: same losses, same final adapter.
    whole = tmp_path / "whole"
    cfg = load_config(config, {"model": {"output": str(whole)}})
    run_sft(TrainRequest(cfg, data, whole, device="cpu", max_steps=STEPS))
    losses = {e["step"]: e["loss"] for e in log_history(whole) if "loss" in e}
    resumed_losses = {e["step"]: e["loss"] for e in log_history(cut) if "loss" in e}
    assert resumed_losses == pytest.approx(losses, abs=1e-5)
    a = load_file(whole / "adapter_model.safetensors")
    b = load_file(cut / "adapter_model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_resume_without_the_runs_step_budget_is_refused(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A run planned for --max-steps 2, resumed without it (the budget then comes from the
    epochs): the schedule cannot be stretched, so the first resumed step never runs."""
    from qmd_ft.errors import UserError

    data = prepared(tmp_path)
    cfg = load_config(
        None,
        {
            "model": {"base": str(tiny_model_dir)},
            "dataset": {"name": str(data)},
            "training": {"batch_size": 2, "save_steps": 1, "logging_steps": 1},
            "lora": {"rank": 4, "alpha": 8},
        },
    )
    out = tmp_path / "run"
    run_sft(TrainRequest(cfg, data, out, device="cpu", max_steps=2))
    before = load_file(out / "checkpoint-2" / "adapter_model.safetensors")
    with pytest.raises(UserError, match="planned for 2 steps"):
        run_sft(TrainRequest(cfg, data, out, device="cpu", resume=True))
    assert not (out / "checkpoint-3").exists()
    after = load_file(out / "checkpoint-2" / "adapter_model.safetensors")
    assert all((before[k] == after[k]).all() for k in before)
