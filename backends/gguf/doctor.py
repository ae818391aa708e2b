"""The doctor's row for the gguf backend's runtime, llama-cpp-python (optional: it compiles
llama.cpp; GGUF export of f16 and q8_0 works without it)."""

from __future__ import annotations

from qmd_ft.machine import Check, installed

WHAT = "llama.cpp (GGUF)"


def diagnose() -> list[Check]:
    """The runtime's row: its version, or what is missing without it and how to add it."""
    version = installed("llama_cpp_python") or installed("llama-cpp-python")
    if version is None:
        detail = "llama-cpp-python not installed: no GGUF verification, K-quants or gguf eval"
        fix = "make gguf-runtime, or pip install -e '.[gguf-runtime]' (compiles llama.cpp, ~10 min)"
        return [Check(WHAT, False, detail, fix)]
    return [Check(WHAT, True, f"llama-cpp-python {version}")]
