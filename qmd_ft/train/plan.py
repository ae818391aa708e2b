"""What a training command will do, decided before anything runs.

The stages to run and their resolved configs (`plan_stages`), the request each backend stage
gets (`train_request`), which data dirs get prepared first (`plan_data`) and the line that
describes a stage. Nothing here trains or writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from qmd_ft.backend import TrainRequest
from qmd_ft.config import Config, load_config, split_overrides
from qmd_ft.data.prepare import TRAIN_FILE, VAL_FILE
from qmd_ft.data.prepared import SFT_KEYS, Sources, check_dataset_name, read_split, stale_sources
from qmd_ft.data.reader import resolve_paths
from qmd_ft.errors import UserError
from qmd_ft.resume import latest_checkpoint

STAGES = ("sft", "grpo")
"""The training stages, in the order `all` runs them."""

DEFAULT_CONFIGS = {"sft": Path("configs/sft.yaml"), "grpo": Path("configs/grpo.yaml")}


@dataclass(frozen=True)
class Planned:
    """One stage to run: its name, resolved config and the file it came from."""

    stage: str
    config: Config
    source: Path


def plan_stages(
    stages: tuple[str, ...],
    configs: dict[str, Path | None],
    overrides: list[str] | None,
    *,
    model: str | None = None,
    outputs: dict[str, Path | None] | None = None,
    processes: int = 1,
) -> list[Planned]:
    """Resolve the config of every stage to run, in order (all of them before any runs).

    `overrides` are `--set [stage:]key=value` items: bare ones reach every stage's config,
    prefixed ones their stage's only. `model` replaces model.base, `outputs` a stage's
    model.output. When SFT and GRPO both run, GRPO starts from the SFT output (`model.sft`)
    and writes beside it (`<sft output parent>/grpo`): this chaining wins over bare items, a
    `grpo:` item or a GRPO output wins over it. `processes`: the DDP world size GRPO's batch
    must fit.
    """
    split = split_overrides(overrides, stages)
    outputs = outputs or {}
    base = [f"model.base={model}"] if model else []
    plans: list[Planned] = []
    for stage in stages:
        source = configs.get(stage) or DEFAULT_CONFIGS[stage]
        chained: list[str] = []
        if stage == "grpo" and plans:
            sft_out = Path(plans[0].config.model.output)
            chained = [f"model.sft={sft_out}", f"model.output={sft_out.parent / 'grpo'}"]
        out = outputs.get(stage)
        items = [
            *base,
            *split.common,
            *chained,
            *split.staged[stage],
            *([f"model.output={out}"] if out else []),
        ]
        cfg = load_config(source, items, stage=stage, processes=processes)
        plans.append(Planned(stage, cfg, source))
    return plans


def train_request(
    cfg: Config, device: str | None, max_steps: int | None, resume: bool
) -> TrainRequest:
    """The request a backend stage gets: the config's prepared data and output dir."""
    return TrainRequest(
        config=cfg,
        data_dir=Path(cfg.dataset.name),
        output_dir=Path(cfg.model.output),
        device=device,
        max_steps=max_steps,
        resume=resume,
    )


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
