"""Every speed switch trains the recipe: same optimizer steps, examples, schedule and losses.

A speed-up that changes what is trained is not one: a token budget that grew the micro-batch
but kept the accumulation would take a fraction of the optimizer steps and leave the adapter
undertrained. So each switch that can run on a CPU trains the tiny model on the same config as
the plain path, and the runs must agree step for step (the GPU-only switches are in
tests/test_cuda_gpu.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")

import cuda_support
from cuda_support import prepared, train_steps

from qmd_ft.backends.cuda.speed import SpeedOptions

RECIPE = {**cuda_support.RECIPE, "learning_rate": 5e-3}
"""4 examples per optimizer step over 6 training rows: two steps an epoch, the second short."""

SWITCHES = {
    "padding_free": SpeedOptions(padding_free=True),
    "tokens_per_batch (large)": SpeedOptions(tokens_per_batch=100_000),
    "tokens_per_batch (one row)": SpeedOptions(tokens_per_batch=120),
    "padding_free + tokens_per_batch": SpeedOptions(padding_free=True, tokens_per_batch=100_000),
}


def _train(tiny_model_dir: Path, data: Path, out: Path, speed: SpeedOptions) -> dict[str, Any]:
    """Train the recipe with `speed` on the CPU; the per-step log."""
    return train_steps(tiny_model_dir, data, out, speed, "cpu", RECIPE)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("recipe")
    return {"root": root, **_train(tiny_model_dir, prepared(root), root / "plain", SpeedOptions())}


@pytest.mark.parametrize("name", list(SWITCHES))
def test_speed_switch_trains_the_recipes_steps(
    plain: dict[str, Any], tiny_model_dir: Path, name: str
) -> None:
    root = plain["root"]
    fast = _train(tiny_model_dir, root / "prepared", root / name.replace(" ", "_"), SWITCHES[name])
    assert plain["steps"] == [1, 2, 3, 4]  # ceil(6 / 4) steps an epoch, two epochs
    assert fast["steps"] == plain["steps"]
    assert fast["lr"] == pytest.approx(plain["lr"], rel=1e-6)  # the same schedule
    assert fast["loss"] == pytest.approx(plain["loss"], rel=1e-4)
    assert fast["grad_norm"] == pytest.approx(plain["grad_norm"], rel=1e-3)
