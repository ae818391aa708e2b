"""The doctor's row for the cuda backend's device: a usable GPU, or why torch cannot use one.

It names the trap a pip freeze of a CPU machine sets (a CPU-only torch on a GPU box silently
trains on its CPU) and a driver too old for torch's CUDA build. torch is imported only to ask.
"""

from __future__ import annotations

import importlib

from qmd_ft.machine import Check, cuda_device_count, install_hint, installed, nvidia_driver

WHAT = "CUDA (cuda backend)"


def diagnose() -> list[Check]:
    """The backend's one device row."""
    return [check_cuda()]


def check_cuda() -> Check:
    """Whether torch sees a CUDA device; else the reason and its fix."""
    if installed("torch") is None:
        return Check(WHAT, False, "torch not installed", install_hint("cuda"))
    torch = importlib.import_module("torch")
    count = cuda_device_count()
    if count:
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(count))
        return Check(WHAT, True, f"{count} device(s): {names}")
    gpu = nvidia_driver()
    if gpu and torch.version.cuda is None:
        return Check(
            WHAT,
            False,
            f"torch {torch.__version__} is a CPU-only build, but this machine has an NVIDIA GPU",
            "reinstall torch's CUDA build: make setup (the lock takes PyPI's CUDA torch on Linux), "
            "or pip install --force-reinstall 'torch' from PyPI",
        )
    if gpu:
        return Check(
            WHAT,
            False,
            f"torch {torch.__version__} (CUDA {torch.version.cuda}) cannot use the GPU",
            "the NVIDIA driver is likely older than this CUDA build: update it (nvidia-smi shows "
            "the CUDA version it supports)",
        )
    return Check(
        WHAT,
        False,
        f"torch {torch.__version__}: no CUDA device",
        "train on CPU with --device cpu (tiny models), on HF Jobs with --hf-jobs, or on a GPU",
    )
