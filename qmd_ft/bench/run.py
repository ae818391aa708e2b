"""`qmd-ft bench`'s dispatch: check the plan, pick the backend from the registry, let it
measure (`Backend.bench`), add the ratios against upstream."""

from __future__ import annotations

from typing import Any

from qmd_ft import backend as backends
from qmd_ft.backend import Backend
from qmd_ft.bench.plan import BenchPlan
from qmd_ft.bench.results import ratios
from qmd_ft.errors import UserError


def bench_backend(name: str) -> backends.BackendSpec:
    """The registry line of a backend bench can measure (one that trains)."""
    trainers = backends.names(training=True)
    if name not in trainers:
        raise UserError(f"--backend {name}: bench measures {backends.either(trainers)}")
    return backends.spec(name)


def run_bench(plan: BenchPlan, backend: str = "cuda") -> dict[str, Any]:
    """Measure `plan` with the named backend; the result dict of `report`'s input."""
    plan.check()
    bench_backend(backend)
    impl: Backend = backends.get_backend(backend)  # a one-line error when packages are missing
    result = impl.bench(plan)
    result["setup"] = {"backend": backend, **result["setup"]}
    if "upstream" in result:
        result["ratios"] = ratios(result["ours"], result["upstream"])
    return result
