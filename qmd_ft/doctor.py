"""`qmd-ft doctor`: what this machine can run, and the fix for each missing piece.

The backend rows come from the registry (`qmd_ft.backend.REGISTRY`): for each backend, its
packages, then its own `diagnose` rows (its device). Each check imports its package lazily and
never touches the network (the HF login check reads the locally saved token; it never prints it).
"""

from __future__ import annotations

import shutil
import sys

from qmd_ft import backend
from qmd_ft.errors import UserError
from qmd_ft.machine import Check, install_hint, installed


def _package(what: str, dist: str, extra: str) -> Check:
    v = installed(dist)
    if v is None:
        return Check(what, False, "not installed", install_hint(extra))
    return Check(what, True, v)


def check_python() -> Check:
    ok = sys.version_info >= (3, 11)
    return Check("python", ok, sys.version.split()[0], "" if ok else "use Python 3.11 or newer")


def backend_checks(spec: backend.BackendSpec) -> list[Check]:
    """One backend's rows: each package it needs, then its device rows (`Backend.diagnose`)."""
    rows = [_package(module, module, spec.extra) for module in spec.requires]
    try:
        rows += backend.load(spec.name).diagnose()
    except UserError as e:
        rows.append(Check(f"{spec.name} backend", False, str(e), install_hint(spec.extra)))
    return rows


def check_hf_login() -> Check:
    if installed("huggingface_hub") is None:
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
    """Every check, in the order a new user needs them: Python, each backend, export, Hub, disk."""
    rows = [check_python()]
    for spec in backend.REGISTRY:
        rows += backend_checks(spec)
    return [*rows, _package("gguf", "gguf", "gguf"), check_hf_login(), check_disk()]
