"""Everything that can fail without training, for every planned stage before the first starts.

`train all` and the pipeline must not fail hours in, after SFT, on a GRPO typo: each stage's
backend checks (device, output dir, paths, prompt field), the local model paths and the step
budget of a resume are checked for all of them first. Config rules (GRPO's generation batch
for the run's world size) are validators in `qmd_ft.config`, checked as `plan_stages` loads.
"""

from __future__ import annotations

from qmd_ft.backend import Backend, TrainRequest, capable, either, require_training, resolve_name
from qmd_ft.errors import UserError
from qmd_ft.model_ref import check_local_dir
from qmd_ft.resume import check_resume_steps, latest_checkpoint
from qmd_ft.train.plan import Planned


def training_backend(name: str, processes: int) -> str:
    """The backend `name` resolves to, when it trains and runs `processes` processes."""
    resolved = resolve_name(name)
    require_training(resolved)
    if processes > 1 and resolved not in capable("multi_process"):
        raise UserError(
            f"--gpus {processes}: the {resolved} backend runs one process; "
            f"use --backend {either(capable('multi_process'))}"
        )
    return resolved


def preflight(
    impl: Backend | None,
    plans: list[Planned],
    requests: list[TrainRequest],
    processes: int = 1,
) -> None:
    """Check every planned stage before any of them trains; raise UserError on the first problem.

    `impl` None (`--hf-jobs`: the job's machine has the backend) keeps to what holds on any
    machine. A later stage's `model.sft` may be made by an earlier one (`sft_pending`).
    """
    for i, (p, req) in enumerate(zip(plans, requests, strict=True)):
        check_local_dir(p.config.model.base, "model.base")
        if impl is not None:
            impl.check(p.stage, req, processes=processes, sft_pending=i > 0)
        if req.resume:
            budget = req.max_steps or p.config.training.max_steps
            check_resume_steps(latest_checkpoint(req.output_dir), budget)
