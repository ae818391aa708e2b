"""Fixtures and markers shared by the whole test suite.

Tests never download anything: model tests use `tiny_model_dir`, a tiny random Qwen3 built
offline once per session, and tests that need QMD's real data use `shared_dir`, which skips
where `../shared` is absent. `gpu` tests skip without CUDA, found without importing torch at
conftest import time (so the core suite runs, and starts fast, where torch is missing).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

MARKERS = {
    "gpu": "needs a CUDA GPU (skipped without one)",
    "slow": "takes more than ~30 s on a 2-core CPU",
}


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers that the ini file does not already declare (no duplicates)."""
    declared = {re.split(r"[:(]", line, maxsplit=1)[0].strip() for line in config.getini("markers")}
    for name, description in MARKERS.items():
        if name not in declared:
            config.addinivalue_line("markers", f"{name}: {description}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `gpu` tests without CUDA; torch is imported only if such tests were collected."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    reason = _no_cuda_reason()
    if reason:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=reason))


def _no_cuda_reason() -> str | None:
    """Why CUDA tests cannot run here, or None when a CUDA device is usable."""
    if importlib.util.find_spec("torch") is None:
        return "needs a CUDA GPU: torch is not installed"
    import torch

    if not torch.cuda.is_available():
        return "needs a CUDA GPU: torch.cuda.is_available() is False"
    return None


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The project root (the folder holding `qmd_ft/`, `data/`, `evals/`)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir(repo_root: Path) -> Path:
    """`../shared` beside the project (real QMD data, specs); skips the test where absent."""
    path = repo_root.parent / "shared"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Path:
    """A tiny random Qwen3 checkpoint (seed 0, tokenizer learnt from the project's data).

    Built once per session (about a second) and shared: tests must not write into it.
    """
    for module in ("numpy", "safetensors", "tokenizers"):
        pytest.importorskip(module)
    from qmd_ft.tiny_model import build_tiny_model

    return build_tiny_model(
        tmp_path_factory.mktemp("tiny-model"), seed=0, data_dir=repo_root / "data"
    )


@pytest.fixture
def project(tmp_path: Path, repo_root: Path) -> Path:
    """A project dir: data/examples.jsonl, eval queries, the shipped configs (not prepared)."""
    from cuda_support import write_examples

    write_examples(tmp_path / "data" / "examples.jsonl")
    (tmp_path / "evals").mkdir()
    (tmp_path / "evals" / "queries.txt").write_text("# T\nrust async\n")
    (tmp_path / "configs").mkdir()
    for name in ("sft.yaml", "grpo.yaml"):
        (tmp_path / "configs" / name).write_text((repo_root / "configs" / name).read_text())
    return tmp_path
