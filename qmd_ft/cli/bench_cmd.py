"""`qmd-ft bench`: training and generation speed on random weights, beside the upstream recipe.

The numbers that matter are ratios against QMD's upstream recipe measured in the same run, so
`--upstream-recipe` runs it beside ours. The step and token counts are flags so a CPU can check
the whole path in seconds with `--model-shape tiny` (what the tests do); the defaults are the
anchor's, for a GPU. `--backend mlx` measures the same three numbers through the mlx backend's
trainers and generator (backends/mlx/bench.py); its `--upstream-recipe` runs the torch recipe
on the CPU beside an mlx run on the CPU, and is refused beside mlx on a GPU.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated, Any

import typer
import yaml

from qmd_ft.backend import either, names
from qmd_ft.bench import PARTS, SHAPES, BenchPlan, bench_backend, report, run_bench
from qmd_ft.cli.common import plain, print_json
from qmd_ft.cli.options import JsonOpt
from qmd_ft.errors import UserError


def _speed_overrides(pairs: list[str]) -> dict[str, Any]:
    """`name=value` pairs (values parsed as YAML scalars) for `SpeedOptions.with_overrides`."""
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--speed {pair!r}: expected name=value")
        out[name.strip()] = yaml.safe_load(raw)
    return out


def bench(
    backend: Annotated[
        str, typer.Option(help=f"Backend to measure: {either(names(training=True))}.")
    ] = "cuda",
    model_shape: Annotated[
        str, typer.Option(help=f"Model shape: {', '.join(SHAPES)} (random weights).")
    ] = "qwen3-1.7b",
    upstream_recipe: Annotated[
        bool,
        typer.Option("--upstream-recipe", help="Also measure QMD's upstream recipe, with ratios."),
    ] = False,
    json_: JsonOpt = False,
    device: Annotated[
        str | None,
        typer.Option(help="cpu, or cuda (cuda backend) / gpu (mlx); default: the GPU if any."),
    ] = None,
    parts: Annotated[
        str, typer.Option(help=f"Comma-separated parts to measure: {','.join(PARTS)}.")
    ] = ",".join(PARTS),
    sft_steps: Annotated[int, typer.Option(help="Measured SFT optimizer steps.")] = 12,
    grpo_steps: Annotated[int, typer.Option(help="Measured GRPO optimizer steps.")] = 3,
    warmup: Annotated[int, typer.Option(help="Unmeasured first steps of each run.")] = 2,
    gen_tokens: Annotated[
        int, typer.Option(help="Tokens per completion (generation and GRPO).")
    ] = 200,
    gen_batch: Annotated[int, typer.Option(help="Prompts per generation batch.")] = 16,
    speed: Annotated[
        list[str] | None,
        typer.Option("--speed", help="Override one of ours' cuda speed switches: name=value."),
    ] = None,
) -> None:
    """Measure SFT tokens/s, GRPO s/step and generation tokens/s on random weights.

    Example: qmd-ft bench --backend cuda --upstream-recipe
    Example: qmd-ft bench --backend mlx --model-shape tiny --json
    """
    spec = bench_backend(backend)
    if device is None and model_shape == "qwen3-1.7b" and not (spec.gpu and spec.gpu()):
        raise UserError(
            f"the {backend} backend sees no GPU here: the qwen3-1.7b shape needs one; "
            "use --model-shape tiny, or --device cpu to run it on the CPU anyway"
        )
    plan = BenchPlan(
        shape=model_shape,
        device=device,
        upstream=upstream_recipe,
        parts=tuple(p.strip() for p in parts.split(",") if p.strip()),
        sft_steps=sft_steps,
        grpo_steps=grpo_steps,
        warmup=warmup,
        gen_tokens=gen_tokens,
        gen_batch=gen_batch,
        speed=_speed_overrides(speed or []),
    )
    # The trainers print their log lines to stdout; keep it for the result (JSON stays parseable).
    with contextlib.redirect_stdout(sys.stderr):
        result = run_bench(plan, backend)
    if json_:
        print_json(result)
    else:
        plain(report(result))
