"""Checks that run before any mlx stage trains (`train` calls them through `MlxBackend.check`).

Each covers something a stage would otherwise only discover after loading its models: a local
`model.base` that is not there, the device, an output dir holding another run's checkpoints,
and GRPO's batch arithmetic. They call the very functions the stages use, so the two agree.
"""

from __future__ import annotations

from qmd_ft.backend import TrainRequest
from qmd_ft.backends.mlx.checkpoints import checkpoint_to_resume
from qmd_ft.backends.mlx.grpo import check_batch
from qmd_ft.backends.mlx.models import use_device
from qmd_ft.model_ref import check_local_dir


def check_stage(
    stage: str, req: TrainRequest, processes: int = 1, sft_pending: bool = False
) -> None:
    """Raise UserError on the first problem of one planned stage (`sft` or `grpo`); mlx runs
    one process, and its GRPO loads `model.sft` itself, so `processes`/`sft_pending` change
    nothing (they are the `Backend.check` contract)."""
    check_local_dir(req.config.model.base, "model.base")
    use_device(req.device)
    if not req.resume:
        checkpoint_to_resume(req.output_dir, resume=False)  # refuses a reused output dir
    if stage == "grpo":
        check_batch(req.config)
