"""`qmd-ft doctor`: what this machine can run, and the fix for each missing piece.

Each check imports its package lazily and never touches the network (the HF login check reads
the locally saved token; it never prints it).
"""

from __future__ import annotations

import importlib
import platform
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table."""

    what: str
    ok: bool
    detail: str
    fix: str = ""


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def install_hint(extra: str) -> str:
    """How to add an extra to this project's environment (qmd-ft is not installed by name from
    an index: that name on PyPI is not ours)."""
    return f"make setup (installs every extra from the lock), or pip install -e '.[{extra}]'"


def _package(what: str, dist: str, extra: str) -> Check:
    v = _version(dist)
    if v is None:
        return Check(what, False, "not installed", install_hint(extra))
    return Check(what, True, v)


def nvidia_gpu() -> str | None:
    """The NVIDIA driver this machine has, read without torch: None when there is none."""
    version = Path("/proc/driver/nvidia/version")
    if version.is_file():
        first = version.read_text(encoding="utf-8", errors="replace").splitlines()[:1]
        return first[0].strip() if first else "NVIDIA driver"
    return "NVIDIA driver (nvidia-smi found)" if shutil.which("nvidia-smi") else None


def check_python() -> Check:
    ok = sys.version_info >= (3, 11)
    return Check("python", ok, sys.version.split()[0], "" if ok else "use Python 3.11 or newer")


def check_cuda() -> Check:
    what = "CUDA (cuda backend)"
    if _version("torch") is None:
        return Check(what, False, "torch not installed", install_hint("cuda"))
    torch = importlib.import_module("torch")
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(count))
        return Check(what, True, f"{count} device(s): {names}")
    gpu = nvidia_gpu()
    if gpu and torch.version.cuda is None:
        # The trap a pip freeze of a CPU machine sets: a GPU box silently trains on its CPU.
        return Check(
            what,
            False,
            f"torch {torch.__version__} is a CPU-only build, but this machine has an NVIDIA GPU",
            "reinstall torch's CUDA build: make setup (the lock takes PyPI's CUDA torch on Linux), "
            "or pip install --force-reinstall 'torch' from PyPI",
        )
    if gpu:
        return Check(
            what,
            False,
            f"torch {torch.__version__} (CUDA {torch.version.cuda}) cannot use the GPU",
            "the NVIDIA driver is likely older than this CUDA build: update it (nvidia-smi shows "
            "the CUDA version it supports)",
        )
    return Check(
        what,
        False,
        f"torch {torch.__version__}: no CUDA device",
        "train on CPU with --device cpu (tiny models), on HF Jobs with --hf-jobs, or on a GPU",
    )


def check_mlx() -> Check:
    if _version("mlx") is None:
        return Check("MLX (mlx backend)", False, "not installed", install_hint("mlx"))
    mx = importlib.import_module("mlx.core")
    device = str(mx.default_device())
    apple = platform.system() == "Darwin" and platform.machine() == "arm64"
    detail = f"mlx {_version('mlx')} on {device}" + ("" if apple else " (CPU build; slow)")
    return Check("MLX (mlx backend)", True, detail)


def check_llama_cpp() -> Check:
    v = _version("llama_cpp_python") or _version("llama-cpp-python")
    if v is None:
        # Optional: export (f16, q8_0) works without it; the extra compiles llama.cpp.
        detail = "llama-cpp-python not installed: no GGUF verification, K-quants or gguf eval"
        fix = "make gguf-runtime, or pip install -e '.[gguf-runtime]' (compiles llama.cpp, ~10 min)"
        return Check("llama.cpp (GGUF)", False, detail, fix)
    return Check("llama.cpp (GGUF)", True, f"llama-cpp-python {v}")


def check_hf_login() -> Check:
    if _version("huggingface_hub") is None:
        return Check("HF login", False, "huggingface_hub not installed", install_hint("hub"))
    from huggingface_hub import get_token

    if get_token():
        return Check("HF login", True, "token found (publish and HF Jobs available)")
    return Check("HF login", False, "no token", "hf auth login, or export HF_TOKEN")


def check_disk(path: str = ".") -> Check:
    free = shutil.disk_usage(path).free / 1e9
    ok = free > 20
    return Check("disk", ok, f"{free:.0f} GB free", "" if ok else "a 1.7B run needs ~20 GB")


def run_checks() -> list[Check]:
    """Every check, in the order a new user needs them."""
    return [
        check_python(),
        _package("transformers", "transformers", "cuda"),
        _package("trl", "trl", "cuda"),
        _package("peft", "peft", "cuda"),
        check_cuda(),
        check_mlx(),
        _package("mlx-lm", "mlx-lm", "mlx"),
        _package("gguf", "gguf", "gguf"),
        check_llama_cpp(),
        check_hf_login(),
        check_disk(),
    ]
