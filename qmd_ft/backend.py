"""The backends: their registry (the one place that names them), the contract each implements,
and picking one by name.

A backend is a package under the top-level `backends/` folder, installed as `qmd_ft.backends.X`,
whose `BACKEND` is a `LazyBackend`: a declaration mapping the protocol's methods to
"module:function" targets, imported when a method runs. So picking a backend, asking whether it
is available or listing it in `qmd-ft doctor` never imports torch or mlx, and the core stays
light. Adding a backend is its package plus one `REGISTRY` line: the `--backend` choices and
help, the errors, the doctor's rows and `qmd-ft bench`'s dispatch all read the registry.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from qmd_ft.config import Config, EvalConfig
from qmd_ft.errors import UserError
from qmd_ft.machine import Check, apple_silicon, cuda_visible, install_hint, mlx_gpu_visible

if TYPE_CHECKING:
    from qmd_ft.bench.plan import BenchPlan


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do beyond generating for eval."""

    trains: bool = True
    """sft, grpo and merge (False: generation only, for eval)."""
    multi_process: bool = False
    """`--gpus N`: the command relaunched as N DDP processes (`launched`, `relaunch`)."""
    hf_jobs: bool = False
    """What `--hf-jobs` runs on the job's machine."""


@dataclass(frozen=True)
class BackendSpec:
    """One registered backend: where it lives, what it needs and what it can do."""

    name: str
    module: str
    """The package whose `BACKEND` implements `Backend`."""
    help: str
    extra: str
    """The pyproject extra that installs what it needs."""
    capabilities: Capabilities
    requires: tuple[str, ...] = ()
    """Top-level modules it imports (checked by `available`, listed by the doctor)."""
    auto: Callable[[], bool] | None = None
    """`--backend auto` picks the first backend whose probe says yes (else the first trainer)."""
    gpu: Callable[[], bool] | None = None
    """Whether its fast accelerator is visible (bench refuses the full shape without one)."""


REGISTRY: tuple[BackendSpec, ...] = (
    BackendSpec(
        "cuda", "qmd_ft.backends.cuda", "PyTorch + TRL + PEFT on a CUDA GPU (or --device cpu)",
        "cuda", Capabilities(multi_process=True, hf_jobs=True),
        requires=("torch", "transformers", "trl", "peft", "datasets", "accelerate"),
        auto=cuda_visible, gpu=cuda_visible,
    ),
    BackendSpec(
        "mlx", "qmd_ft.backends.mlx", "MLX + mlx-lm on Apple Silicon (mlx[cpu] elsewhere)",
        "mlx", Capabilities(), requires=("mlx", "mlx_lm"), auto=apple_silicon, gpu=mlx_gpu_visible,
    ),
    BackendSpec(
        "gguf", "qmd_ft.backends.gguf", "llama.cpp on a GGUF file, as QMD runs it (eval only)",
        "gguf-runtime", Capabilities(trains=False),
    ),
)  # fmt: skip


def names(training: bool = False) -> tuple[str, ...]:
    """The registered backend names, in registry order (only those that train with `training`)."""
    return capable("trains") if training else tuple(s.name for s in REGISTRY)


def capable(capability: Literal["trains", "multi_process", "hf_jobs"]) -> tuple[str, ...]:
    """The backends with one of `Capabilities` (`trains`, `multi_process`, `hf_jobs`), in order."""
    return tuple(s.name for s in REGISTRY if getattr(s.capabilities, capability))


def either(items: tuple[str, ...]) -> str:
    """Names as prose: `a`, `a or b`, `a, b or c`."""
    return " or ".join(filter(None, (", ".join(items[:-1]), items[-1])))


def choices_help(training: bool = True) -> str:
    """The `--backend` help text, e.g. "auto, cuda or mlx." (with gguf where eval takes it)."""
    return either(("auto", *names(training))) + "."


def spec(name: str) -> BackendSpec:
    """The registry line of a backend (not `auto`: see `resolve_name`)."""
    for entry in REGISTRY:
        if entry.name == name:
            return entry
    raise UserError(f"unknown backend {name!r}: choose auto, {', '.join(names())}")


def resolve_name(name: str) -> str:
    """`auto`: the first backend whose probe says yes (cuda with a CUDA device, mlx on Apple
    Silicon), else the first training backend (cuda: it runs on the CPU)."""
    if name != "auto":
        return spec(name).name
    for entry in REGISTRY:
        if entry.auto is not None and entry.auto():
            return entry.name
    return names(training=True)[0]


def require_training(name: str) -> None:
    """A UserError unless the backend trains (gguf only generates, for eval)."""
    if not spec(name).capabilities.trains:
        raise UserError(
            f"the {name} backend is for inference (eval) only: "
            f"train with --backend {either(names(training=True))}"
        )


def load(name: str) -> Backend:
    """The named backend's `BACKEND`, imported (light: no framework loads) but not checked."""
    entry = spec(resolve_name(name))
    try:
        module = importlib.import_module(entry.module)
    except ImportError as e:
        raise UserError(
            f"backend {entry.name!r} cannot load ({e}); install it: {install_hint(entry.extra)}"
        ) from e
    return module.BACKEND


def get_backend(name: str = "auto") -> Backend:
    """The named backend, ready to run; a clear error when its packages are missing."""
    backend = load(name)
    ok, why = backend.available()
    if not ok:
        raise UserError(f"backend {backend.name!r} is not usable here: {why}")
    return backend


@dataclass(frozen=True)
class TrainRequest:
    """One training stage: the resolved config, prepared data and where results go."""

    config: Config
    data_dir: Path
    output_dir: Path
    device: str | None = None
    max_steps: int | None = None
    resume: bool = False


Generator = Callable[[list[str]], list[str]]
"""Rendered prompts in, eval texts out: cut at the stop token, special tokens kept, closed think
blocks removed (`qmd_ft.prompt.strip_think`), the same on every backend."""


class Backend(Protocol):
    """What the core needs from a backend."""

    name: str

    @property
    def capabilities(self) -> Capabilities:
        """Its registry line's capabilities."""

    def available(self) -> tuple[bool, str]:
        """Whether it can run here, and why not (with the fix) when it can't."""

    def diagnose(self) -> list[Check]:
        """The doctor's rows for what it runs on (its device), beyond its packages."""

    def check(
        self, stage: str, req: TrainRequest, processes: int = 1, sft_pending: bool = False
    ) -> None:
        """Fail fast on a planned stage (`sft`, `grpo`) before anything trains; `sft_pending`:
        GRPO's `model.sft` comes from an SFT stage earlier in this run."""

    def sft(self, req: TrainRequest) -> Path:
        """Supervised fine-tuning; returns the PEFT adapter (or full model) directory."""

    def grpo(self, req: TrainRequest) -> Path:
        """GRPO on the merged SFT weights; returns the new PEFT adapter directory."""

    def merge(self, base: str, adapters: list[str], out: Path) -> Path:
        """Base plus adapters into one HF safetensors model dir with tokenizer."""

    def generator(
        self, model: str, adapters: list[str], gen: EvalConfig, device: str | None = None
    ) -> Generator:
        """A batched generation callable for eval."""

    def bench(self, plan: BenchPlan) -> dict[str, Any]:
        """`qmd-ft bench`'s measurements of `plan` (`qmd_ft.bench.run` adds the rest)."""

    def launched(self) -> bool:
        """True inside a process its multi-process launcher started (so: do not launch again)."""

    def relaunch(self, argv: list[str], processes: int, device: str | None) -> int:
        """Run `qmd-ft ARGV` as `processes` processes; their exit code."""


@dataclass(frozen=True)
class LazyBackend:
    """A `Backend` declared as targets: each method calls the "module:function" it names,
    imported on the first call (a leading "." is relative to `package`).

    What the registry says a backend cannot do is refused with one line before any target is
    looked up, so a generate-only backend declares no training targets at all.
    """

    name: str
    package: str
    targets: Mapping[str, str] = field(default_factory=dict)

    @property
    def capabilities(self) -> Capabilities:
        """Its registry line's capabilities."""
        return spec(self.name).capabilities

    def _call(self, method: str, *args: Any) -> Any:
        target = self.targets.get(method)
        if target is None:
            raise NotImplementedError(f"backend {self.name!r} declares no {method}")
        module, _, function = target.partition(":")
        return getattr(importlib.import_module(module, self.package), function)(*args)

    def available(self) -> tuple[bool, str]:
        """Its own probe when it declares one, else: are the registry's `requires` installed."""
        if "available" in self.targets:
            return self._call("available")
        entry = spec(self.name)
        missing = [m for m in entry.requires if importlib.util.find_spec(m) is None]
        if missing:
            return False, f"missing {', '.join(missing)}: {install_hint(entry.extra)}"
        return True, ""

    def diagnose(self) -> list[Check]:
        """Its declared doctor rows (none when it declares no `diagnose`)."""
        return self._call("diagnose") if "diagnose" in self.targets else []

    def check(
        self, stage: str, req: TrainRequest, processes: int = 1, sft_pending: bool = False
    ) -> None:
        """Its preflight for one planned stage."""
        require_training(self.name)
        self._call("check", stage, req, processes, sft_pending)

    def sft(self, req: TrainRequest) -> Path:
        """Its SFT stage."""
        require_training(self.name)
        return self._call("sft", req)

    def grpo(self, req: TrainRequest) -> Path:
        """Its GRPO stage."""
        require_training(self.name)
        return self._call("grpo", req)

    def merge(self, base: str, adapters: list[str], out: Path) -> Path:
        """Its merge."""
        require_training(self.name)
        return self._call("merge", base, adapters, out)

    def generator(
        self, model: str, adapters: list[str], gen: EvalConfig, device: str | None = None
    ) -> Generator:
        """Its eval generator."""
        return self._call("generator", model, adapters, gen, device)

    def bench(self, plan: BenchPlan) -> dict[str, Any]:
        """Its bench measurements (training backends only: bench times training)."""
        if not self.capabilities.trains:
            raise UserError(f"--backend {self.name}: bench measures {either(names(True))}")
        return self._call("bench", plan)

    def launched(self) -> bool:
        """Whether its launcher started this process (never, for a one-process backend)."""
        return self.capabilities.multi_process and self._call("launched")

    def relaunch(self, argv: list[str], processes: int, device: str | None) -> int:
        """Its multi-process launch; a UserError for a one-process backend."""
        if not self.capabilities.multi_process:
            raise UserError(
                f"--gpus {processes}: the {self.name} backend runs one process; "
                f"use --backend {either(capable('multi_process'))}"
            )
        return self._call("relaunch", argv, processes, device)
