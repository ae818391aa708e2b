"""`--gpus N`: the DDP path through `accelerate launch`, proven with two CPU processes (gloo)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("accelerate")

from cuda_support import write_examples

from qmd_ft.backends.cuda.grpo import COMPLETIONS_FILE
from qmd_ft.backends.cuda.launch import launch_command


def test_launch_command_runs_the_cli_under_accelerate() -> None:
    cmd = launch_command(["train", "sft", "--device", "cpu"], 2)
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--num_processes") + 1] == "2" and "--multi_gpu" in cmd
    assert cmd[-6:] == ["-m", "qmd_ft", "train", "sft", "--device", "cpu"]


def test_train_all_on_two_cpu_processes(tiny_model_dir: Path, tmp_path: Path) -> None:
    examples = write_examples(tmp_path / "raw" / "examples.jsonl")
    config = tmp_path / "sft.yaml"
    config.write_text(
        f"model: {{base: {tiny_model_dir}, output: {tmp_path / 'run' / 'sft'}}}\n"
        f"dataset: {{name: {tmp_path / 'data'}, data_glob: {examples}, eval_split: 0.25, "
        "evals: null}\n"
        "training: {batch_size: 2, logging_steps: 1}\n"
        "lora: {rank: 4, alpha: 8}\n"
    )
    grpo = tmp_path / "grpo.yaml"
    grpo.write_text(
        f"model: {{base: {tiny_model_dir}}}\n"
        f"dataset: {{name: {tmp_path / 'data'}, prompt_field: prompt}}\n"
        "training: {batch_size: 2, logging_steps: 1}\n"
        "grpo: {num_generations: 4, max_completion_length: 8}\n"
        "lora: {rank: 4, alpha: 8}\n"
    )
    r = subprocess.run(
        [
            sys.executable, "-m", "qmd_ft", "train", "all", "--config", str(config),
            "--grpo-config", str(grpo), "--device", "cpu", "--max-steps", "2", "--gpus", "2",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert sum(line.startswith("trained sft -> ") for line in r.stdout.splitlines()) == 1
    for stage in ("sft", "grpo"):
        manifest = json.loads((tmp_path / "run" / stage / "manifest.json").read_text())
        assert manifest["processes"] == 2
        assert manifest["metrics"]["global_step"] == 2
    # Each GRPO step gathers 2 completions from each process: one group of 4 generations.
    rows = (tmp_path / "run" / "grpo" / COMPLETIONS_FILE).read_text().splitlines()
    assert [json.loads(row)["step"] for row in rows] == [1] * 4 + [2] * 4
