"""The doctor's row for the mlx backend's device: Metal on Apple Silicon, else a slow CPU build.

mlx is imported only to ask its default device.
"""

from __future__ import annotations

import importlib

from qmd_ft.machine import Check, apple_silicon, install_hint, installed

WHAT = "MLX (mlx backend)"


def diagnose() -> list[Check]:
    """The backend's one device row."""
    version = installed("mlx")
    if version is None:
        return [Check(WHAT, False, "not installed", install_hint("mlx"))]
    mx = importlib.import_module("mlx.core")
    detail = f"mlx {version} on {mx.default_device()}"
    return [Check(WHAT, True, detail + ("" if apple_silicon() else " (CPU build; slow)"))]
