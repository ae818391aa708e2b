"""What this machine has, asked in one place: installed packages, CUDA devices, an MLX GPU,
Apple Silicon, the NVIDIA driver; and the row type the doctor reports them in.

Backend picking (`--backend auto`), `qmd-ft bench` and `qmd-ft doctor` all ask these same
probes, so they cannot disagree about a machine. Each imports its framework only when called
(torch or mlx only to ask), so importing this module costs nothing.
"""

from __future__ import annotations

import platform
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table: what was checked, whether it is fine, and the fix."""

    what: str
    ok: bool
    detail: str
    fix: str = ""


def installed(dist: str) -> str | None:
    """The installed version of a distribution, or None (read from metadata, nothing imported)."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def install_hint(extra: str) -> str:
    """How to add an extra to this project's environment (qmd-ft is not installed by name from
    an index: that name on PyPI is not ours)."""
    return f"make setup (installs every extra from the lock), or pip install -e '.[{extra}]'"


def cuda_device_count() -> int:
    """CUDA devices torch can use: 0 without torch or a device (no CUDA context is created)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def cuda_visible() -> bool:
    """True when torch is installed and sees a CUDA device."""
    return cuda_device_count() > 0


def mlx_gpu_visible() -> bool:
    """True when mlx is installed with a GPU (Metal) device."""
    try:
        import mlx.core as mx
    except ImportError:
        return False
    return bool(mx.is_available(mx.gpu))


def apple_silicon() -> bool:
    """True on an Apple Silicon Mac (where mlx runs on Metal)."""
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def nvidia_driver() -> str | None:
    """The NVIDIA driver this machine has, read without torch: None when there is none."""
    version = Path("/proc/driver/nvidia/version")
    if version.is_file():
        first = version.read_text(encoding="utf-8", errors="replace").splitlines()[:1]
        return first[0].strip() if first else "NVIDIA driver"
    return "NVIDIA driver (nvidia-smi found)" if shutil.which("nvidia-smi") else None
