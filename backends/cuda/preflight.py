"""Checks that run before any stage trains, so `train all` cannot fail hours in on a typo.

Each covers something a stage would otherwise only discover after loading models (or after
the SFT stage of `train all` has already run): the device, an output dir holding another run's
checkpoints, a missing local model, GRPO's prompt field, and the SFT result GRPO starts from.
GRPO's batch arithmetic is a config rule (`qmd_ft.config.grpo_batch_problem`), validated when
a GRPO stage's config is loaded for the run's world size.
"""

from __future__ import annotations

from pathlib import Path

from qmd_ft.backend import TrainRequest
from qmd_ft.backends.cuda.grpo import check_prompt_field
from qmd_ft.backends.cuda.loading import check_model_ref, is_adapter, require_dir, resolve_device
from qmd_ft.backends.cuda.speed import SpeedOptions, check_speed
from qmd_ft.backends.cuda.training import checkpoint_to_resume
from qmd_ft.errors import UserError


def check_stage(stage: str, req: TrainRequest, processes: int, sft_pending: bool) -> None:
    """Raise UserError on the first problem of one planned stage (`sft` or `grpo`).

    `sft_pending`: GRPO's `model.sft` is produced by an SFT stage earlier in this run, so it
    need not exist yet.
    """
    cfg = req.config
    check_speed(SpeedOptions.from_config(cfg), resolve_device(req.device))
    checkpoint_to_resume(req.output_dir, req.resume)
    check_model_ref(cfg.model.base, "model.base")
    if stage != "grpo":
        return
    check_prompt_field(cfg)
    sft = cfg.model.sft
    if sft is None or sft_pending:
        return
    require_dir(sft, "model.sft", "train SFT first (qmd-ft train sft) or --set model.sft=DIR")
    if cfg.lora is None and is_adapter(Path(sft)):
        raise UserError(
            f"model.sft {sft} is an adapter, but full-parameter GRPO (no lora section) needs a "
            "merged model: run qmd-ft merge first and point model.sft at its output"
        )
