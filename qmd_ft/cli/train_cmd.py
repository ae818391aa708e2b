"""`qmd-ft train [sft|grpo|all]`: one config per stage, any backend.

`all` runs SFT with `--config`, then GRPO with `--grpo-config` on the SFT result: GRPO needs
its own hyperparameters (QMD's recipe: lr 5e-7, a small LoRA, beta 0.04), so one file cannot
serve both. `--set key=value` reaches every stage's config, `--set sft:key=value` /
`--set grpo:key=value` one stage's (`--grpo-set X`, the old spelling, is `--set grpo:X`).

Planning, checks and running live in `qmd_ft.train` (shared with `qmd-ft pipeline`): every
stage is planned and checked before the first one starts, and `--dry-run` runs the same checks,
so a plan it prints is one a real run accepts. This module keeps the options, the printing,
the multi-GPU relaunch and the HF Jobs submission.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from qmd_ft.backend import capable, either, get_backend
from qmd_ft.cli.common import State, console, plain
from qmd_ft.cli.options import (
    BackendOpt,
    ConfigOpt,
    DeviceOpt,
    DryRunOpt,
    FlavorOpt,
    HfJobsOpt,
    NamespaceOpt,
    StageSetOpt,
    TimeoutOpt,
)
from qmd_ft.config import dump_config
from qmd_ft.errors import UserError
from qmd_ft.jobs.inputs import local_command
from qmd_ft.train.checks import preflight, training_backend
from qmd_ft.train.plan import (
    STAGES,
    DataPlan,
    Planned,
    describe,
    plan_data,
    plan_stages,
    train_request,
)
from qmd_ft.train.run import run_data_plan, run_stages, summary


class Stage(StrEnum):
    """Which training stage(s) to run."""

    sft = "sft"
    grpo = "grpo"
    all = "all"

    @property
    def stages(self) -> tuple[str, ...]:
        return STAGES if self is Stage.all else (self.value,)


def same_command(ctx: typer.Context) -> list[str]:
    """This `qmd-ft train …` invocation as arguments, rebuilt from the parsed parameters.

    DDP children run exactly what the user typed (`--gpus` included: they see `LOCAL_RANK` and
    train instead of launching), so whatever resolves a config resolves it the same way in
    every process. Rebuilding from the parsed parameters (rather than `sys.argv`) also works
    when the command was invoked programmatically. Parameters are told apart by
    `param_type_name`: typer ships its own click, so isinstance checks against the `click`
    package would not match.
    """
    args = ["--debug"] if State.debug else []
    args.append(ctx.info_name or "train")
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if value in (None, ()) or value == param.default:
            continue
        if param.param_type_name == "argument":
            args.append(str(value))
        elif getattr(param, "is_flag", False):
            args.append(param.opts[0] if value else param.secondary_opts[0])
        elif getattr(param, "multiple", False):
            for item in value:
                args += [param.opts[0], str(item)]
        else:
            args += [param.opts[0], str(value)]
    return args


def train(
    ctx: typer.Context,
    stage: Annotated[Stage, typer.Argument(help="sft, grpo, or all (SFT then GRPO).")] = Stage.all,
    config: ConfigOpt = None,
    backend: BackendOpt = "auto",
    device: DeviceOpt = None,
    model: Annotated[str | None, typer.Option(help="Overrides model.base.")] = None,
    output: Annotated[
        Path | None, typer.Option(help="Overrides model.output (SFT's in `all`).")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Stop each stage here.")] = None,
    set_: StageSetOpt = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint.")] = False,
    dry_run: DryRunOpt = False,
    gpus: Annotated[
        int, typer.Option(min=1, help="DDP processes via accelerate (CPU ones with --device cpu).")
    ] = 1,
    grpo_config: Annotated[Path, typer.Option(help="GRPO config for `all`.")] = Path(
        "configs/grpo.yaml"
    ),
    grpo_output: Annotated[
        Path | None, typer.Option(help="GRPO output for `all` (default: beside the SFT output).")
    ] = None,
    grpo_set: Annotated[
        list[str] | None, typer.Option("--grpo-set", hidden=True, help="= --set grpo:ITEM.")
    ] = None,
    hf_jobs: HfJobsOpt = False,
    flavor: FlavorOpt = "a10g-large",
    timeout: TimeoutOpt = "2h",
    namespace: NamespaceOpt = None,
    resume_from: Annotated[
        str | None,
        typer.Option(help="HF Jobs: continue a cut job's run (job id) from its uploaded outputs."),
    ] = None,
) -> None:
    """Fine-tune: SFT (LoRA or full), then GRPO on the merged SFT weights.

    --config defaults to configs/sft.yaml (configs/grpo.yaml for `train grpo`).
    Data: dataset.name is the prepared dir; train prepares it from dataset.data_glob when it
    has no train split, and again (same files and settings) when the files it was prepared from
    changed since. --dry-run makes every check of a real run and prints the plan.
    --resume continues the same run: same data, same --max-steps.

    Example: qmd-ft train sft --config configs/sft.yaml --backend cuda --device cpu --max-steps 5
    """
    started = time.monotonic()
    if resume_from and not hf_jobs:
        raise UserError("--resume-from continues an HF Jobs run: add --hf-jobs (here: --resume)")
    # The job's machine, not this one, picks the backend: --hf-jobs runs cuda (also on a Mac).
    name = training_backend(
        capable("hf_jobs")[0] if hf_jobs and backend == "auto" else backend, gpus
    )
    job_argv = sys.argv[1:]
    # Inside a launched process, the world size is what it is (also under a manual launch).
    processes = int(os.environ.get("WORLD_SIZE", gpus))
    if hf_jobs:
        extra, processes = _check_job(name, device, flavor, timeout, gpus, ctx)
        job_argv += extra
    both = stage is Stage.all
    plans = plan_stages(
        stage.stages,
        {"sft": config, "grpo": grpo_config} if both else {stage.value: config},
        [*(set_ or []), *(f"grpo:{item}" for item in grpo_set or [])],
        model=model,
        outputs={"sft": output, "grpo": grpo_output} if both else {stage.value: output},
        processes=processes,
    )
    data = plan_data(plans, resume, read_rows=not hf_jobs)
    requests = [train_request(p.config, device, max_steps, resume) for p in plans]
    impl = None if hf_jobs else get_backend(name)  # the job installs its own backend
    preflight(impl, plans, requests, processes)
    if dry_run:
        _print_plan(plans, data, name, device, max_steps, gpus)
        if hf_jobs:
            job = [a for a in local_command(job_argv) if a != "--dry-run"]
            where = f", namespace {namespace}" if namespace else ""
            plain(
                f"  run on HF Jobs ({flavor}, timeout {timeout}{where}): qmd-ft {shlex.join(job)}"
            )
        return
    if hf_jobs:
        from qmd_ft.cli.jobs_cmd import submit_cli_job

        run_data_plan(data, plain)  # the job gets the prepared data, not the recipe for it
        submit_cli_job(
            job_argv,
            plans[0].source,
            flavor=flavor,
            timeout=timeout,
            namespace=namespace,
            required=[*(p.config.dataset.name for p in plans), *(p.source for p in plans)],
            resume=resume_from,
        )
        return
    assert impl is not None
    run_data_plan(data, plain)
    if gpus > 1 and not impl.launched():
        # The processes print progress and the summary (rank 0); pass on their exit code.
        raise typer.Exit(impl.relaunch(same_command(ctx), gpus, device))
    results = run_stages(
        impl, plans, requests, _say, lambda p: describe(p, name, device, max_steps)
    )
    _say(summary(results, time.monotonic() - started))


def _print_plan(
    plans: list[Planned],
    data: DataPlan,
    backend: str,
    device: str | None,
    max_steps: int | None,
    gpus: int,
) -> None:
    """`--dry-run`'s output: each resolved config, then what would run, in order."""
    for p in plans:
        console.print(f"# {p.stage}: {p.source}", markup=False)
        plain(dump_config(p.config).rstrip())
    console.print("plan:")
    for cfg in data.missing.values():
        plain(f"  prepare {cfg.dataset.name} from {cfg.dataset.data_glob}")
    for data_dir, sources in data.stale.items():
        plain(f"  prepare {data_dir} again: the files it was prepared from changed since")
        plain(f"    ({sources.describe()})")
    for p in plans:
        plain("  " + describe(p, backend, device, max_steps))
    if gpus > 1:
        plain(f"  launch: accelerate, {gpus} DDP processes")


def _check_job(
    backend: str, device: str | None, flavor: str, timeout: str, gpus: int, ctx: typer.Context
) -> tuple[list[str], int]:
    """`--hf-jobs` options, checked before anything is prepared, uploaded or submitted; returns
    the arguments the job's command gets on top of the typed ones, and its DDP processes.

    The hardware is the flavor's: the job trains on `cuda` (on `cpu` for a cpu-* flavor) with
    one DDP process per GPU of the flavor, unless told otherwise within what it has.
    """
    from qmd_ft.jobs.submit import (
        check_flavor,
        check_gpus,
        check_hub_version,
        check_timeout,
        flavor_gpus,
    )

    if importlib.util.find_spec("huggingface_hub") is None:
        raise UserError("--hf-jobs needs huggingface_hub: pip install 'qmd-ft[hub]'")
    check_hub_version()
    if backend not in capable("hf_jobs"):
        raise UserError(f"--hf-jobs runs the {either(capable('hf_jobs'))} backend (got {backend})")
    if device not in (None, "cpu", "cuda"):
        raise UserError(f"--device {device}: choose cpu or cuda")
    check_flavor(flavor)
    check_timeout(timeout)
    has = flavor_gpus(flavor)
    if device == "cuda" and not has:
        raise UserError(f"--device cuda: flavor {flavor} has no GPU; pick e.g. a10g-large")
    # typer ships its own click: the source is compared by name (see `same_command`)
    typed = getattr(ctx.get_parameter_source("gpus"), "name", "") == "COMMANDLINE"
    processes = check_gpus(flavor, gpus if typed else None)
    extra = ["--backend", "cuda"]
    if device is None:
        extra += ["--device", "cuda" if has else "cpu"]
    if processes > 1 and not typed:
        extra += ["--gpus", str(processes)]
    return extra, processes


def _say(text: str) -> None:
    """Print from one process only: DDP children would otherwise repeat every line."""
    if os.environ.get("RANK", "0") == "0":
        plain(text)
