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


def _package(what: str, dist: str, extra: str) -> Check:
    v = _version(dist)
    if v is None:
        return Check(what, False, "not installed", f"pip install 'qmd-ft[{extra}]'")
    return Check(what, True, v)


def check_python() -> Check:
    ok = sys.version_info >= (3, 11)
    return Check("python", ok, sys.version.split()[0], "" if ok else "use Python 3.11 or newer")


def check_cuda() -> Check:
    if _version("torch") is None:
        return Check(
            "CUDA (cuda backend)", False, "torch not installed", "pip install 'qmd-ft[cuda]'"
        )
    torch = importlib.import_module("torch")
    if not torch.cuda.is_available():
        return Check(
            "CUDA (cuda backend)",
            False,
            f"torch {torch.__version__}: no CUDA device",
            "train on CPU with --device cpu (tiny models), on HF Jobs with --hf-jobs, or on a GPU",
        )
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return Check("CUDA (cuda backend)", True, f"{torch.cuda.device_count()} device(s): {names}")


def check_mlx() -> Check:
    if _version("mlx") is None:
        return Check("MLX (mlx backend)", False, "not installed", "pip install 'qmd-ft[mlx]'")
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
        fix = "uv pip install -e '.[gguf-runtime]' (compiles llama.cpp, ~10 min)"
        return Check("llama.cpp (GGUF)", False, detail, fix)
    return Check("llama.cpp (GGUF)", True, f"llama-cpp-python {v}")


def check_hf_login() -> Check:
    if _version("huggingface_hub") is None:
        return Check(
            "HF login", False, "huggingface_hub not installed", "pip install 'qmd-ft[hub]'"
        )
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
