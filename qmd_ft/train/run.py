"""Running planned training: the data plan's preparing, then each stage -> its artifact.

Every artifact is checked finite before a later stage builds on it; `summary` is the line a
finished run ends with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qmd_ft.backend import Backend, TrainRequest
from qmd_ft.config import Config
from qmd_ft.data.prepare import DataErrors, prepare
from qmd_ft.data.prepared import Sources
from qmd_ft.data.reader import resolve_paths
from qmd_ft.errors import UserError
from qmd_ft.finite import check_finite
from qmd_ft.manifest import read_manifest
from qmd_ft.train.plan import DataPlan, Planned, eval_set

Log = Callable[[str], None]

SHOWN_METRICS = ("train_loss", "eval_loss", "reward", "kl")
"""The manifest metrics the summary line shows, beside the step."""


@dataclass(frozen=True)
class Trained:
    """One finished stage: its artifact and the headline numbers its manifest records."""

    stage: str
    artifact: Path
    step: int | None = None
    metrics: tuple[tuple[str, float], ...] = ()

    @classmethod
    def read(cls, stage: str, artifact: Path) -> Trained:
        """The stage's numbers from its artifact's manifest (none when it records none)."""
        metrics = (read_manifest(artifact) or {}).get("metrics", {})
        step = metrics.get("global_step")
        shown = tuple(
            (key, float(metrics[key]))
            for key in SHOWN_METRICS
            if isinstance(metrics.get(key), int | float)
        )
        return cls(stage, artifact, step if isinstance(step, int) else None, shown)

    def describe(self) -> str:
        shown = [f"step {self.step}"] if self.step is not None else []
        shown += [f"{key.replace('_', ' ')} {value:.4g}" for key, value in self.metrics]
        return f"{self.stage} -> {self.artifact}" + (f" ({', '.join(shown)})" if shown else "")


def run_stages(
    impl: Backend,
    plans: list[Planned],
    requests: list[TrainRequest],
    say: Log,
    describe: Callable[[Planned], str],
) -> list[Trained]:
    """Train each planned stage in order; a diverged run fails before a later stage uses it."""
    results = []
    for p, req in zip(plans, requests, strict=True):
        say(describe(p))
        out = train_stage(impl, p.stage, req)
        results.append(Trained.read(p.stage, out))
    return results


def train_stage(impl: Backend, stage: str, req: TrainRequest) -> Path:
    """One stage on `impl` (`sft` or `grpo`), its artifact checked finite."""
    out = (impl.sft if stage == "sft" else impl.grpo)(req)
    check_finite(out)
    return out


def summary(results: list[Trained], seconds: float) -> str:
    """One line: each stage's artifact and headline numbers, then the wall time."""
    minutes, secs = divmod(round(seconds), 60)
    return f"trained {'; '.join(r.describe() for r in results)} in {minutes}m{secs:02d}s"


def run_data_plan(data: DataPlan, log: Log) -> None:
    """Prepare what `plan_data` found missing or out of date."""
    for cfg in data.missing.values():
        prepare_data(cfg, log)
    for data_dir, sources in data.stale.items():
        reprepare_data(data_dir, sources, log)


def prepare_data(cfg: Config, log: Log) -> None:
    """Run `data prepare` with the config's glob, eval set, split fraction and seed."""
    _prepare(
        resolve_paths([cfg.dataset.data_glob]),
        Path(cfg.dataset.name),
        eval_set(cfg),
        cfg.dataset.eval_split,
        cfg.dataset.seed,
        cfg.dataset.data_glob,
        log,
    )


def reprepare_data(data_dir: str, sources: Sources, log: Log) -> None:
    """Prepare an out-of-date dir again from the files and settings it records.

    The recorded settings (not the config's) are kept, so the result is what the `qmd-ft data
    prepare` that made the dir gives on today's files.
    """
    log(f"{data_dir}: the files it was prepared from changed ({sources.describe()}); preparing")
    _prepare(
        sources.files,
        Path(data_dir),
        sources.evals,
        sources.val_fraction,
        sources.seed,
        sources.describe(),
        log,
    )


def _prepare(
    files: list[Path],
    out: Path,
    evals: Path | None,
    val_fraction: float,
    seed: int,
    what: str,
    log: Log,
) -> None:
    """`prepare`, with its invalid lines logged as FILE:LINE: reason and one error line."""
    try:
        result = prepare(files, out, evals, val_fraction=val_fraction, seed=seed)
    except DataErrors as e:
        for problem in e.problems:
            log(str(problem))
        raise UserError(f"{len(e.problems)} invalid line(s) in {what}") from e
    c = result.info["counts"]
    log(f"prepared {out}: train {c['train']}, val {c['val']} from {what}")
