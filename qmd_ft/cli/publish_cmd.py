"""`qmd-ft publish`: gate a model against the deployed one, then upload it with its eval."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from qmd_ft.cli.common import config_or_defaults, console, plain
from qmd_ft.cli.options import ConfigOpt, DryRunOpt, EvalBackendOpt, SetOpt
from qmd_ft.cli.progress import progress_bars
from qmd_ft.cli.render import print_gate


def publish(
    model: Annotated[Path, typer.Option(help="Merged model directory.")],
    eval_results: Annotated[Path, typer.Option("--eval", help="Its results.json.")],
    repo: Annotated[str | None, typer.Option(help="Default: publish.repo.")] = None,
    registry: Annotated[Path | None, typer.Option(help="Local registry dir (not the Hub).")] = None,
    gguf: Annotated[Path | None, typer.Option(help="GGUF dir for the -gguf repo.")] = None,
    retrieval: Annotated[
        Path | None, typer.Option(help="`eval --retrieval` results: no-regression rule.")
    ] = None,
    dry_run: DryRunOpt = False,
    force: Annotated[bool, typer.Option(help="Allow -v2/-sft/-grpo repo names.")] = False,
    backend: EvalBackendOpt = "auto",
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Publish a model with its eval, only when it beats the deployed one.

    The deployed model's published eval is the baseline; without one it is evaluated here
    (with --backend). --dry-run gates and lists the files and commit message it would upload,
    then uploads and keeps nothing (exit 1 when the gate refuses).

    Example: qmd-ft publish --model outputs/merged --eval outputs/eval/results.json --dry-run
    """
    from qmd_ft.publish.destination import open_registry
    from qmd_ft.publish.release import (
        execute,
        harness_evaluator,
        harness_retrieval_evaluator,
        plan_release,
    )

    cfg = config_or_defaults(config, set_)
    reg = open_registry(cfg.publish, registry)
    dest = repo or cfg.publish.repo

    # The card and results files to upload are staged here and removed however the run ends.
    with tempfile.TemporaryDirectory(prefix="qmd-ft-release-") as staging:
        with progress_bars() as on_progress:
            plan = plan_release(
                model,
                eval_results,
                reg,
                dest,
                cfg.publish,
                harness_evaluator(backend, cfg.eval, on_progress=on_progress),
                gguf_dir=gguf,
                retrieval=retrieval,
                evaluate_deployed_retrieval=harness_retrieval_evaluator(backend, cfg.eval),
                gguf_repo=cfg.publish.gguf_repo,
                force_name=force,
                staging=Path(staging),
            )
        console.print(f"baseline: {plan.baseline_source}")
        print_gate(plan.verdict)
        if dry_run:
            console.print(
                f"dry run: would commit {len(plan.files)} file(s) to {reg.name}:{plan.repo}"
            )
            plain(f"commit message: {plan.message}")
            for name in sorted(plan.files):
                plain(f"  {name}")
            if plan.gguf_repo:
                plain(f"and {len(plan.gguf_files)} file(s) to {reg.name}:{plan.gguf_repo}")
            if not plan.passed:
                raise typer.Exit(1)
            return
        commits = execute(plan, reg)
    said = [f"{'already published' if plan.deployed else 'published'} {plan.repo} ({commits[0]})"]
    if plan.gguf_repo:
        done = "already published" if plan.gguf_deployed else "published"
        said.append(f"{done} {plan.gguf_repo} ({commits[1]})")
    console.print(" and ".join(said))
