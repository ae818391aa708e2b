"""`qmd-ft train [sft|grpo|all]`: one config per stage, any backend.

`all` runs SFT with `--config`, then GRPO with `--grpo-config` on the SFT result: GRPO needs
its own hyperparameters (QMD's recipe: lr 5e-7, a small LoRA, beta 0.04), so one file cannot
serve both. Everything that can fail without training (backend, device, config values, paths,
batch arithmetic, the data dir and its rows, a resume's step budget, HF Jobs options) is checked
for every planned stage before the first one starts, and `--dry-run` runs the same checks, so a
plan it prints is one a real run accepts. Only models are not loaded.

The data dir (`dataset.name`) is prepared here when it has no train split yet, and prepared
again, from the files and settings its dataset_info.json records, when those files changed
since: a run never trains on stale data. A `--resume` over changed data is refused instead,
since the run would continue on other examples than it started with.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from qmd_ft.backend import Backend, TrainRequest, get_backend, resolve_name
from qmd_ft.cli.common import State, console, plain
from qmd_ft.config import Config, dump_config, load_config
from qmd_ft.data.prepare import TRAIN_FILE, VAL_FILE, DataErrors, prepare
from qmd_ft.data.prepared import (
    SFT_KEYS,
    Sources,
    check_dataset_name,
    read_split,
    stale_sources,
)
from qmd_ft.data.reader import resolve_paths
from qmd_ft.errors import UserError
from qmd_ft.finite import check_finite
from qmd_ft.jobs.inputs import local_command
from qmd_ft.manifest import read_manifest
from qmd_ft.model_ref import check_local_dir
from qmd_ft.resume import check_resume_steps, latest_checkpoint

TRAINING_BACKENDS = ("cuda", "mlx")
"""Backends that train; `gguf` (llama-cpp-python) only generates, for eval."""

DEFAULT_CONFIGS = {"sft": Path("configs/sft.yaml"), "grpo": Path("configs/grpo.yaml")}


class Stage(StrEnum):
    """Which training stage(s) to run."""

    sft = "sft"
    grpo = "grpo"
    all = "all"


@dataclass(frozen=True)
class Planned:
    """One stage to run: its name, resolved config and the file it came from."""

    stage: str
    config: Config
    source: Path


def plan_stages(
    stage: Stage,
    config: Path | None,
    overrides: list[str],
    grpo_config: Path,
    grpo_overrides: list[str],
) -> list[Planned]:
    """Resolve the config of every stage to run, in order (all of them before any runs).

    In `all`, GRPO starts from the SFT output (`model.sft`) and writes beside it
    (`<sft output parent>/grpo`) unless `--grpo-set model.output=…`/`--grpo-output` says where.
    """
    if stage is not Stage.all:
        source = config or DEFAULT_CONFIGS[stage.value]
        return [Planned(stage.value, load_config(source, overrides), source)]
    sft_source = config or DEFAULT_CONFIGS["sft"]
    sft = load_config(sft_source, overrides)
    sft_out = Path(sft.model.output)
    chained = [f"model.sft={sft_out}", f"model.output={sft_out.parent / 'grpo'}"]
    grpo = load_config(grpo_config, chained + grpo_overrides)
    return [Planned("sft", sft, sft_source), Planned("grpo", grpo, grpo_config)]


def needs_prepare(cfg: Config) -> bool:
    """True when the prepared dataset dir has no train split yet."""
    return not (Path(cfg.dataset.name) / TRAIN_FILE).is_file()


def required_keys(p: Planned) -> tuple[str, ...]:
    """The keys each row of a stage's split must hold (what its trainer reads)."""
    if p.stage == "grpo" and p.config.dataset.prompt_field == "messages":
        return (*SFT_KEYS, "messages")
    return SFT_KEYS


@dataclass
class DataPlan:
    """Which data dirs get prepared before training: missing ones, and out-of-date ones."""

    missing: dict[str, Config] = field(default_factory=dict)
    """Per dir without a train split, the first stage's config (its glob, split and seed)."""
    stale: dict[str, Sources] = field(default_factory=dict)
    """Per dir whose recorded input files changed since it was prepared, those inputs."""


def plan_data(plans: list[Planned], resume: bool, read_rows: bool) -> DataPlan:
    """Check every stage's data dir and decide what to prepare; raise on what cannot work.

    `read_rows`: also read each split that is used as it is, so a damaged row stops the run
    here with its FILE:LINE rather than in a trainer after the models loaded (not for
    `--hf-jobs`, whose job reads the split itself).
    """
    data = DataPlan()
    for p in plans:
        ds = p.config.dataset
        if ds.name in data.missing or ds.name in data.stale:
            continue  # an earlier stage's settings prepare it
        if needs_prepare(p.config):
            resolve_paths([ds.data_glob])  # no matching file: one line, before anything else
            check_dataset_name(ds.name)
            eval_set(p.config)
            data.missing[ds.name] = p.config
            continue
        data_dir = Path(ds.name)
        stale = stale_sources(data_dir)
        if stale is not None:
            if resume and latest_checkpoint(Path(p.config.model.output)) is not None:
                raise UserError(
                    f"--resume: the files {data_dir} was prepared from changed since "
                    f"({stale.describe()}), and a resumed run must continue on the data it "
                    "started with: restore them, or train a new run into another --output"
                )
            data.stale[ds.name] = stale
        elif read_rows:
            keys = required_keys(p)
            read_split(data_dir, TRAIN_FILE, require=keys)
            if p.stage == "sft":
                read_split(data_dir, VAL_FILE, require=keys)
    return data


def eval_set(cfg: Config) -> Path | None:
    """The eval queries file that preparing must keep out of training (None: no eval set).

    A missing file is an error, as in `data prepare`: training on the eval queries would make
    every later eval a lie.
    """
    if cfg.dataset.evals is None:
        return None
    evals = Path(cfg.dataset.evals)
    if not evals.is_file():
        raise UserError(
            f"dataset.evals {evals}: not found, so its queries cannot be kept out of training; "
            "create it, or --set dataset.evals=null to train without an eval set"
        )
    return evals


def prepare_data(cfg: Config) -> None:
    """Run `data prepare` with the config's glob, eval set, split fraction and seed."""
    _prepare(
        resolve_paths([cfg.dataset.data_glob]),
        Path(cfg.dataset.name),
        eval_set(cfg),
        cfg.dataset.eval_split,
        cfg.dataset.seed,
        cfg.dataset.data_glob,
    )


def reprepare_data(data_dir: str, sources: Sources) -> None:
    """Prepare an out-of-date dir again from the files and settings it records.

    The recorded settings (not the config's) are kept, so the result is what the `qmd-ft data
    prepare` that made the dir gives on today's files.
    """
    plain(f"{data_dir}: the files it was prepared from changed ({sources.describe()}); preparing")
    _prepare(
        sources.files,
        Path(data_dir),
        sources.evals,
        sources.val_fraction,
        sources.seed,
        sources.describe(),
    )


def _prepare(
    files: list[Path], out: Path, evals: Path | None, val_fraction: float, seed: int, what: str
) -> None:
    """`prepare`, with its invalid lines printed as FILE:LINE: reason and one error line."""
    try:
        result = prepare(files, out, evals, val_fraction=val_fraction, seed=seed)
    except DataErrors as e:
        for problem in e.problems:
            plain(str(problem))
        raise UserError(f"{len(e.problems)} invalid line(s) in {what}") from e
    c = result.info["counts"]
    plain(f"prepared {out}: train {c['train']}, val {c['val']} from {what}")


def run_data_plan(data: DataPlan) -> None:
    """Prepare what `plan_data` found missing or out of date."""
    for cfg in data.missing.values():
        prepare_data(cfg)
    for data_dir, sources in data.stale.items():
        reprepare_data(data_dir, sources)


def describe(p: Planned, backend: str, device: str | None, max_steps: int | None) -> str:
    """One plan line: what a stage trains, from what, to where."""
    cfg = p.config
    adapter = f"LoRA r{cfg.lora.rank}" if cfg.lora is not None else "full fine-tuning"
    start = cfg.model.base
    if p.stage == "grpo":
        start = f"{cfg.model.base} + {cfg.model.sft}" if cfg.model.sft else cfg.model.base
        adapter += f", beta {cfg.grpo.beta}, {cfg.grpo.num_generations} generations/prompt"
    steps = max_steps or cfg.training.max_steps
    length = f"max {steps} steps" if steps else f"{cfg.training.epochs:g} epoch(s)"
    return (
        f"{p.stage}: {start} ({adapter}) on {cfg.dataset.name}, {length}, "
        f"backend {backend}, device {device or 'auto'} -> {cfg.model.output}"
    )


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


def summary(results: list[tuple[str, Path]], seconds: float) -> str:
    """One line: each stage's artifact and headline numbers, then the wall time."""
    parts = []
    for stage, path in results:
        metrics = (read_manifest(path) or {}).get("metrics", {})
        shown = [f"step {metrics['global_step']}"] if "global_step" in metrics else []
        for key in ("train_loss", "eval_loss", "reward", "kl"):
            if isinstance(metrics.get(key), int | float):
                shown.append(f"{key.replace('_', ' ')} {metrics[key]:.4g}")
        parts.append(f"{stage} -> {path}" + (f" ({', '.join(shown)})" if shown else ""))
    minutes, secs = divmod(round(seconds), 60)
    return f"trained {'; '.join(parts)} in {minutes}m{secs:02d}s"


def train(
    ctx: typer.Context,
    stage: Annotated[Stage, typer.Argument(help="sft, grpo, or all (SFT then GRPO).")] = Stage.all,
    config: Annotated[
        Path | None,
        typer.Option(help="YAML config (default configs/sft.yaml; configs/grpo.yaml for grpo)."),
    ] = None,
    backend: Annotated[str, typer.Option(help="auto, cuda or mlx.")] = "auto",
    device: Annotated[str | None, typer.Option(help="cpu or cuda (cuda backend).")] = None,
    model: Annotated[str | None, typer.Option(help="Overrides model.base.")] = None,
    output: Annotated[
        Path | None, typer.Option(help="Overrides model.output (SFT's in `all`).")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Stop each stage here.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="key.path=value")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan only.")] = False,
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
        list[str] | None, typer.Option("--grpo-set", help="key.path=value for GRPO in `all`.")
    ] = None,
    hf_jobs: Annotated[bool, typer.Option("--hf-jobs", help="Run on HF Jobs.")] = False,
    flavor: Annotated[str, typer.Option(help="HF Jobs hardware.")] = "a10g-large",
    timeout: Annotated[str, typer.Option(help="HF Jobs time limit, e.g. 2h.")] = "2h",
    namespace: Annotated[str | None, typer.Option(help="HF Jobs namespace.")] = None,
    resume_from: Annotated[
        str | None,
        typer.Option(help="HF Jobs: continue a cut job's run (job id) from its uploaded outputs."),
    ] = None,
) -> None:
    """Fine-tune: SFT (LoRA or full), then GRPO on the merged SFT weights.

    Data: dataset.name is the prepared dir; train prepares it from dataset.data_glob when it
    has no train split, and again (same files and settings) when the files it was prepared from
    changed since. --dry-run makes every check of a real run and prints the plan.
    --resume continues the same run: same data, same --max-steps.

    Example: qmd-ft train sft --config configs/sft.yaml --backend cuda --device cpu --max-steps 5
    """
    started = time.monotonic()
    common = [f"model.base={model}"] if model else []
    overrides = [*common, *(set_ or []), *([f"model.output={output}"] if output else [])]
    grpo_overrides = [
        *common,
        *(grpo_set or []),
        *([f"model.output={grpo_output}"] if grpo_output else []),
    ]
    plans = plan_stages(stage, config, overrides, grpo_config, grpo_overrides)
    if resume_from and not hf_jobs:
        raise UserError("--resume-from continues an HF Jobs run: add --hf-jobs (here: --resume)")
    # The job's machine, not this one, picks the backend: --hf-jobs runs cuda (also on a Mac).
    name = "cuda" if hf_jobs and backend == "auto" else resolve_name(backend)
    if name not in TRAINING_BACKENDS:
        raise UserError(
            f"the {name} backend is for inference (eval) only: train with --backend cuda or mlx"
        )
    if gpus > 1 and name != "cuda":
        raise UserError(f"--gpus needs the cuda backend (got {name})")
    job_argv = sys.argv[1:]
    if hf_jobs:
        job_argv += _check_job(name, device, flavor, timeout, gpus, ctx)
    data = plan_data(plans, resume, read_rows=not hf_jobs)
    requests = [
        TrainRequest(
            config=p.config,
            data_dir=Path(p.config.dataset.name),
            output_dir=Path(p.config.model.output),
            device=device,
            max_steps=max_steps,
            resume=resume,
        )
        for p in plans
    ]
    impl = None if hf_jobs else get_backend(name)  # the job installs its own backend
    # Inside a launched process, the world size is what it is (also under a manual launch).
    _preflight(impl, plans, requests, int(os.environ.get("WORLD_SIZE", gpus)))
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

        run_data_plan(data)  # the job gets the prepared data, not the recipe for it
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
    run_data_plan(data)
    if gpus > 1:
        from qmd_ft.backends.cuda import launch

        if not launch.launched():
            # The processes print progress and the summary (rank 0); pass on their exit code.
            raise typer.Exit(launch.relaunch(same_command(ctx), gpus, device))
    results = []
    for p, req in zip(plans, requests, strict=True):
        _say(describe(p, name, device, max_steps))
        run = impl.sft if p.stage == "sft" else impl.grpo
        out = run(req)
        check_finite(out)  # a diverged run fails here, before a later stage builds on it
        results.append((p.stage, out))
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
) -> list[str]:
    """`--hf-jobs` options, checked before anything is prepared, uploaded or submitted; returns
    the arguments the job's command gets on top of the typed ones.

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
    if backend != "cuda":
        raise UserError(f"--hf-jobs runs the cuda backend (got {backend})")
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
    return extra


def _preflight(
    impl: Backend | None, plans: list[Planned], requests: list[TrainRequest], processes: int
) -> None:
    """Checks of every stage before any of them trains, the backend's own when it has them.

    `impl` None (`--hf-jobs`) keeps to what holds on any machine: local model paths and the
    step budget of a resume.
    """
    check = getattr(impl, "check", None)
    for i, (p, req) in enumerate(zip(plans, requests, strict=True)):
        if check is not None:
            check(p.stage, req, processes=processes, sft_pending=i > 0)
        else:
            check_local_dir(p.config.model.base, "model.base")
        if req.resume:
            budget = req.max_steps or p.config.training.max_steps
            check_resume_steps(latest_checkpoint(req.output_dir), budget)


def _say(text: str) -> None:
    """Print from one process only: DDP children would otherwise repeat every line."""
    if os.environ.get("RANK", "0") == "0":
        plain(text)
