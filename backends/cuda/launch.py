"""`--gpus N`: run the same training command as N DDP processes through `accelerate launch`.

accelerate's multi-GPU launcher (torchrun underneath) starts the processes and sets `RANK`,
`LOCAL_RANK` and `WORLD_SIZE`; transformers' Trainer then joins the process group (NCCL on
GPUs, gloo with `--device cpu`, which is how tests prove the path without GPUs). The children
see `LOCAL_RANK` and train instead of launching again. It runs in the CLI process before any
model work, so torch is imported only to count GPUs.
"""

from __future__ import annotations

import os
import subprocess
import sys

from qmd_ft.errors import UserError


def launched() -> bool:
    """True inside a process started by accelerate/torchrun (so: do not launch again)."""
    return "LOCAL_RANK" in os.environ


def launch_command(args: list[str], processes: int) -> list[str]:
    """The `accelerate launch` command line that runs `python -m qmd_ft ARGS` N times."""
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "qmd_ft", *args,
    ]  # fmt: skip


def relaunch(args: list[str], processes: int, device: str | None) -> int:
    """Run the command as `processes` DDP processes; return their exit code.

    Mixed precision stays with the Trainer (`bf16` in the training args), so accelerate is
    told `no` rather than reading a machine-wide accelerate config that could disagree.
    """
    if device != "cpu":
        import torch

        visible = torch.cuda.device_count()
        if visible < processes:
            raise UserError(
                f"--gpus {processes}: only {visible} CUDA device(s) visible "
                "(use --device cpu for CPU processes)"
            )
    return subprocess.run(launch_command(args, processes), check=False).returncode
