"""The backend registry is the one place that names backends: a backend registered there (and
nowhere else) is offered, picked, diagnosed, dispatched to and benched; what the registry says
a backend cannot do is refused with one line; picking one imports no framework."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import types
from pathlib import Path

import pytest

from qmd_ft import backend, doctor
from qmd_ft.backend import BackendSpec, Capabilities, LazyBackend
from qmd_ft.bench import BenchPlan, run_bench
from qmd_ft.errors import UserError
from qmd_ft.machine import Check


def _fake_module(calls: list[tuple]) -> types.ModuleType:
    """A backend package `fake_backend` whose targets record their calls."""
    module = types.ModuleType("fake_backend")

    def sft(req):
        calls.append(("sft", req))
        return Path("out/sft")

    def check(stage, req, processes, sft_pending):
        calls.append(("check", stage, processes, sft_pending))

    def measure(plan):
        calls.append(("bench", plan.shape))
        return {"setup": {"device": "fake"}, "ours": {"gen_tokens_per_s": 2.0}, "upstream": {}}

    def diagnose():
        return [Check("fake device", True, "one fake accelerator")]

    module.sft, module.check, module.measure, module.diagnose = sft, check, measure, diagnose
    module.launched = lambda: True
    module.relaunch = lambda argv, processes, device: calls.append(("relaunch", argv)) or 7
    module.BACKEND = LazyBackend(
        "fake",
        "fake_backend",
        {
            name: f"fake_backend:{function}"
            for name, function in [
                ("sft", "sft"),
                ("check", "check"),
                ("bench", "measure"),
                ("diagnose", "diagnose"),
                ("launched", "launched"),
                ("relaunch", "relaunch"),
            ]
        },
    )
    return module


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """`fake` registered with one registry line (first, so `auto` asks it first)."""
    calls: list[tuple] = []
    monkeypatch.setitem(sys.modules, "fake_backend", _fake_module(calls))
    line = BackendSpec(
        "fake",
        "fake_backend",
        "a fake accelerator",
        "fake-extra",
        Capabilities(multi_process=True),
        requires=("pytest",),
        auto=lambda: True,
    )
    monkeypatch.setattr(backend, "REGISTRY", (line, *backend.REGISTRY))
    return calls


def test_a_registered_backend_is_offered_picked_and_dispatched_to(fake: list[tuple]) -> None:
    assert backend.choices_help() == "auto, fake, cuda or mlx."
    assert backend.choices_help(training=False) == "auto, fake, cuda, mlx or gguf."
    assert backend.capable("multi_process") == ("fake", "cuda")
    assert backend.resolve_name("fake") == "fake" and backend.resolve_name("auto") == "fake"
    impl = backend.get_backend("fake")
    assert impl.capabilities.multi_process and impl.available() == (True, "")
    req = backend.TrainRequest(None, Path("data"), Path("out"))  # type: ignore[arg-type]
    impl.check("grpo", req, processes=2, sft_pending=True)
    assert impl.sft(req) == Path("out/sft")
    assert impl.launched() and impl.relaunch(["train", "sft"], 2, None) == 7
    assert fake == [("check", "grpo", 2, True), ("sft", req), ("relaunch", ["train", "sft"])]


def test_doctor_rows_come_from_the_registry(fake: list[tuple]) -> None:
    rows = [c for c in doctor.run_checks() if c.what in ("pytest", "fake device")]
    assert [(c.what, c.ok) for c in rows] == [("pytest", True), ("fake device", True)]


def test_bench_dispatches_through_the_registry(fake: list[tuple]) -> None:
    result = run_bench(BenchPlan(shape="tiny"), "fake")
    assert fake == [("bench", "tiny")]
    assert result["setup"] == {"backend": "fake", "device": "fake"} and result["ratios"] == {}


def test_a_backend_missing_its_packages_says_how_to_install(
    fake: list[tuple], monkeypatch: pytest.MonkeyPatch
) -> None:
    line = dataclasses.replace(backend.spec("fake"), requires=("no_such_module_qmd",))
    monkeypatch.setattr(backend, "REGISTRY", (line, *backend.REGISTRY[1:]))
    ok, why = backend.load("fake").available()
    assert not ok and why.startswith("missing no_such_module_qmd: make setup")
    assert "pip install -e '.[fake-extra]'" in why
    with pytest.raises(UserError, match=r"^backend 'fake' is not usable here: missing"):
        backend.get_backend("fake")
    rows = [c for c in doctor.run_checks() if c.what == "no_such_module_qmd"]
    assert [(c.ok, c.detail) for c in rows] == [(False, "not installed")]


def test_auto_takes_the_first_probe_that_says_yes_else_the_first_trainer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cuda, mlx, gguf = (backend.spec(n) for n in ("cuda", "mlx", "gguf"))

    def probes(cuda_says: bool, mlx_says: bool) -> None:
        lines = (
            dataclasses.replace(cuda, auto=lambda: cuda_says),
            dataclasses.replace(mlx, auto=lambda: mlx_says),
            gguf,
        )
        monkeypatch.setattr(backend, "REGISTRY", lines)

    probes(True, True)
    assert backend.resolve_name("auto") == "cuda"
    probes(False, True)
    assert backend.resolve_name("auto") == "mlx"
    probes(False, False)
    assert backend.resolve_name("auto") == "cuda"  # it runs on the CPU


def test_what_a_backend_cannot_do_is_refused_in_one_line() -> None:
    with pytest.raises(UserError, match=r"^unknown backend 'tpu': choose auto, cuda, mlx, gguf$"):
        backend.resolve_name("tpu")
    gguf = backend.load("gguf")
    assert not gguf.capabilities.trains
    inference = (
        r"^the gguf backend is for inference \(eval\) only: train with --backend cuda or mlx$"
    )
    for refused in (
        lambda: gguf.sft(None),  # type: ignore[arg-type]
        lambda: gguf.check("sft", None),  # type: ignore[arg-type]
        lambda: gguf.merge("base", [], Path("out")),
    ):
        with pytest.raises(UserError, match=inference):
            refused()
    with pytest.raises(UserError, match=r"bench measures cuda or mlx"):
        gguf.bench(BenchPlan(shape="tiny"))
    mlx = backend.load("mlx")
    assert not mlx.launched()
    with pytest.raises(
        UserError, match=r"^--gpus 2: the mlx backend runs one process; use --backend cuda$"
    ):
        mlx.relaunch(["train", "sft"], 2, None)
    assert backend.capable("hf_jobs") == ("cuda",) == backend.capable("multi_process")


def test_picking_and_listing_backends_imports_no_framework() -> None:
    code = (
        "import sys\n"
        "from qmd_ft import backend\n"
        "for name in backend.names():\n"
        "    impl = backend.load(name)\n"
        "    impl.available(), impl.capabilities\n"
        "backend.load('mlx').launched()\n"
        "heavy = {'torch', 'mlx', 'transformers', 'llama_cpp'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
