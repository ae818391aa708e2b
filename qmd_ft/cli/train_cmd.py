"""`qmd-ft train [sft|grpo|all]`: one config per stage, any backend.

`all` runs SFT with `--config`, then GRPO with `--grpo-config` on the SFT result: GRPO needs
its own hyperparameters (QMD's recipe: lr 5e-7, a small LoRA, beta 0.04), so one file cannot
serve both. Everything that can fail without training (config values, paths, device, batch
arithmetic, data preparation) is checked for every planned stage before the first one starts.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from qmd_ft.backend import Backend, TrainRequest, get_backend, resolve_name
from qmd_ft.cli.common import State, console, err_console, plain
from qmd_ft.config import Config, dump_config, load_config
from qmd_ft.data.prepare import TRAIN_FILE, DataErrors, prepare
from qmd_ft.data.reader import resolve_paths
from qmd_ft.errors import UserError
from qmd_ft.manifest import read_manifest

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


def prepare_data(cfg: Config) -> None:
    """Run `data prepare` with the config's glob, eval set, split fraction and seed."""
    out = Path(cfg.dataset.name)
    evals: Path | None = Path(cfg.dataset.evals)
    if not evals.is_file():
        err_console.print(f"warning: {evals} not found: no eval queries excluded", markup=False)
        evals = None
    try:
        result = prepare(
            resolve_paths([cfg.dataset.data_glob]),
            out,
            evals,
            val_fraction=cfg.dataset.eval_split,
            seed=cfg.dataset.seed,
        )
    except DataErrors as e:
        for problem in e.problems:
            plain(str(problem))
        raise UserError(f"{len(e.problems)} invalid line(s) in {cfg.dataset.data_glob}") from e
    c = result.info["counts"]
    plain(f"prepared {out}: train {c['train']}, val {c['val']} from {cfg.dataset.data_glob}")


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
) -> None:
    """Fine-tune: SFT (LoRA or full), then GRPO on the merged SFT weights.

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
    name = resolve_name(backend)
    if gpus > 1 and name != "cuda":
        raise UserError(f"--gpus needs the cuda backend (got {name})")
    unprepared: dict[str, Config] = {}  # per data dir, the first stage's settings prepare it
    for p in plans:
        if needs_prepare(p.config):
            unprepared.setdefault(p.config.dataset.name, p.config)
    if dry_run:
        for p in plans:
            console.print(f"# {p.stage}: {p.source}", markup=False)
            plain(dump_config(p.config).rstrip())
        console.print("plan:")
        for cfg in unprepared.values():
            plain(f"  prepare {cfg.dataset.name} from {cfg.dataset.data_glob}")
        for p in plans:
            plain("  " + describe(p, name, device, max_steps))
        if gpus > 1:
            plain(f"  launch: accelerate, {gpus} DDP processes")
        return
    if hf_jobs:
        if name != "cuda":
            raise UserError(f"--hf-jobs runs the cuda backend (got {name})")
        from qmd_ft.cli.jobs_cmd import submit_cli_job

        for cfg in unprepared.values():
            prepare_data(cfg)  # the job gets the prepared data, not the recipe for it
        submit_cli_job(
            sys.argv[1:],
            plans[0].source,
            flavor=flavor,
            timeout=timeout,
            namespace=namespace,
            required=[*(p.config.dataset.name for p in plans), *(p.source for p in plans)],
        )
        return
    impl = get_backend(name)
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
    # Inside a launched process, the world size is what it is (also under a manual launch).
    _preflight(impl, plans, requests, int(os.environ.get("WORLD_SIZE", gpus)))
    for cfg in unprepared.values():
        prepare_data(cfg)
    if gpus > 1:
        from backends.cuda import launch

        if not launch.launched():
            # The processes print progress and the summary (rank 0); pass on their exit code.
            raise typer.Exit(launch.relaunch(same_command(ctx), gpus, device))
    results = []
    for p, req in zip(plans, requests, strict=True):
        _say(describe(p, name, device, max_steps))
        run = impl.sft if p.stage == "sft" else impl.grpo
        results.append((p.stage, run(req)))
    _say(summary(results, time.monotonic() - started))


def _preflight(
    impl: Backend, plans: list[Planned], requests: list[TrainRequest], processes: int
) -> None:
    """Backend checks for every stage before any of them trains (when the backend has them)."""
    check = getattr(impl, "check", None)
    if check is None:
        return
    for i, (p, req) in enumerate(zip(plans, requests, strict=True)):
        check(p.stage, req, processes=processes, sft_pending=i > 0)


def _say(text: str) -> None:
    """Print from one process only: DDP children would otherwise repeat every line."""
    if os.environ.get("RANK", "0") == "0":
        plain(text)
