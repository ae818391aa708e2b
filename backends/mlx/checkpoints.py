"""Checkpoints and the metrics log, so an interrupted run resumes where it stopped.

A checkpoint `OUT/checkpoint-N/` holds everything that changes during training: the trainable
weights and the optimizer state (mlx safetensors, exact), `trainer_state.json` with the step,
and the usable artifact of that step (a PEFT adapter or a model) for evaluating it. The
training loops make data order a function of (seed, step) and GRPO's sampling a function of
(seed, round), so a resumed run repeats an uninterrupted one; the one thing not restored is
the dropout draws of SFT (mlx cannot set its RNG state), which matters only with lora.dropout.
A checkpoint is written to a temporary name and renamed, so a kill mid-write leaves none.

`OUT/log.jsonl` has one JSON object per logged step, TRL's metric names; resuming drops the
lines after the checkpoint so the log reads as one run.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_unflatten

from qmd_ft.errors import UserError
from qmd_ft.resume import PREFIX, STATE, latest_checkpoint

WEIGHTS = "trainable.safetensors"
OPTIMIZER = "optimizer.safetensors"
LOG = "log.jsonl"


def save_checkpoint(
    out_dir: Path,
    step: int,
    model: nn.Module,
    optimizer: optim.Optimizer,
    write_artifact: Callable[[Path], Any],
) -> Path:
    """Write `out_dir/checkpoint-{step}` atomically; returns its path."""
    final = out_dir / f"{PREFIX}{step}"
    tmp = out_dir / f".{PREFIX}{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    mx.save_safetensors(str(tmp / WEIGHTS), dict(tree_flatten(model.trainable_parameters())))
    mx.save_safetensors(str(tmp / OPTIMIZER), dict(tree_flatten(optimizer.state)))
    (tmp / STATE).write_text(json.dumps({"global_step": step}) + "\n", encoding="utf-8")
    write_artifact(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def checkpoint_to_resume(out_dir: Path, resume: bool) -> Path | None:
    """The checkpoint `--resume` continues from; refuse to silently mix two runs otherwise.

    Same rules as the cuda backend: without `--resume`, an output dir that already holds
    checkpoints is an error; with `--resume` and no checkpoint yet, the run starts over.
    """
    last = latest_checkpoint(out_dir)
    if last is None:
        if resume:
            print(f"--resume: no checkpoint in {out_dir} yet; starting from the beginning")
        return None
    if not resume:
        raise UserError(
            f"{out_dir} already holds {last.name}: pass --resume to continue that run, "
            "or choose another --output"
        )
    return last


def load_checkpoint(path: Path, model: nn.Module, optimizer: optim.Optimizer) -> int:
    """Restore weights and optimizer state from `path`; returns the step it was taken at."""
    model.load_weights(list(mx.load(str(path / WEIGHTS)).items()), strict=False)
    optimizer.state = tree_unflatten(list(mx.load(str(path / OPTIMIZER)).items()))
    step = json.loads((path / STATE).read_text(encoding="utf-8"))["global_step"]
    return int(step)


def append_log(out_dir: Path, record: dict[str, Any]) -> None:
    """Add one metrics record to `out_dir/log.jsonl`."""
    with (out_dir / LOG).open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_log(out_dir: Path) -> list[dict[str, Any]]:
    """All records of `out_dir/log.jsonl` (empty when there is none)."""
    path = out_dir / LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def trim_jsonl(path: Path, last_step: int) -> None:
    """Drop the records of `path` logged after `last_step` (they will be redone)."""
    if not path.is_file():
        return
    kept = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if line and json.loads(line).get("step", 0) <= last_step
    ]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
