"""`qmd-ft doctor` tells the truth: a CPU-only torch on a GPU box, hints shown intact."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from qmd_ft import doctor
from qmd_ft.backends.cuda import doctor as cuda_doctor


def _fake_torch(cuda_build: str | None) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        __version__="2.15.0" + ("" if cuda_build else "+cpu"),
        version=types.SimpleNamespace(cuda=cuda_build),
        cuda=types.SimpleNamespace(is_available=lambda: False),
    )


@pytest.fixture
def torch_as(monkeypatch: pytest.MonkeyPatch):
    def install(cuda_build: str | None, gpu: str | None) -> None:
        monkeypatch.setattr(cuda_doctor, "installed", lambda dist: "2.15.0")
        monkeypatch.setattr(cuda_doctor, "cuda_device_count", lambda: 0)
        fake = _fake_torch(cuda_build)
        monkeypatch.setattr(cuda_doctor.importlib, "import_module", lambda name: fake)
        monkeypatch.setattr(cuda_doctor, "nvidia_driver", lambda: gpu)

    return install


def test_cpu_only_torch_on_an_nvidia_machine_is_named_with_the_fix(torch_as) -> None:
    torch_as(cuda_build=None, gpu="NVRM version: 580.82")
    check = cuda_doctor.check_cuda()
    assert not check.ok
    assert "CPU-only build" in check.detail and "NVIDIA GPU" in check.detail
    assert "make setup" in check.fix


def test_cuda_build_that_cannot_start_points_at_the_driver(torch_as) -> None:
    torch_as(cuda_build="13.2", gpu="NVRM version: 470.1")
    check = cuda_doctor.check_cuda()
    assert not check.ok and "cannot use the GPU" in check.detail and "driver" in check.fix


def test_no_gpu_at_all_is_not_called_a_wrong_build(torch_as) -> None:
    torch_as(cuda_build="13.2", gpu=None)
    check = cuda_doctor.check_cuda()
    assert not check.ok and "no CUDA device" in check.detail and "CPU-only" not in check.detail


def test_install_hints_are_commands_for_this_project() -> None:
    hint = doctor.install_hint("cuda")
    assert "pip install -e '.[cuda]'" in hint
    assert "pip install 'qmd-ft" not in hint  # the name on an index is not ours


def test_the_table_shows_extras_in_brackets() -> None:
    """rich markup would eat `[cuda]`: the rendered table keeps it."""
    code = (
        "from qmd_ft import doctor\n"
        "doctor.run_checks = lambda: [doctor.Check('trl', False, 'not installed', "
        "doctor.install_hint('cuda'))]\n"
        "import sys\n"
        "from qmd_ft.cli import main\n"
        "sys.argv = ['qmd-ft', 'doctor']\n"
        "main()\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert ".[cuda]" in r.stdout, r.stdout + r.stderr
