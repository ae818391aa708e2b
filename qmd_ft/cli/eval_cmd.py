"""`qmd-ft eval`, `compare` and `publish`: measure, gate, release."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from qmd_ft.cli.common import console, err_console, plain, print_json
from qmd_ft.cli.progress import progress_bars
from qmd_ft.config import Config, load_config
from qmd_ft.errors import UserError
from qmd_ft.evaluation import (
    EvalResults,
    backend_for,
    load_results,
    run_eval,
    run_sampled_eval,
    write_results,
)
from qmd_ft.gate import Verdict, shown
from qmd_ft.gguf.runtime import RUNTIME_REQUIREMENTS
from qmd_ft.outputs import check_output_file
from qmd_ft.progress import counter
from qmd_ft.queries import read_queries
from qmd_ft.retrieval.results import load_retrieval_results

Json = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML config (eval/publish).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="key.path=value")]


def _config(path: Path | None, overrides: list[str] | None) -> Config:
    return load_config(path, overrides) if path or overrides else Config()


def print_results(data: EvalResults, verbose: bool) -> None:
    """Per-query scores with sub-scores, then the summary."""
    table = Table(title=f"eval: {data.provenance.model}")
    for col in ("category", "query", "fmt", "div", "hyde", "qual", "ent", "think", "%", "rating"):
        table.add_column(col, overflow="fold")
    for r in data.results:
        table.add_row(
            r.category,
            r.query,
            *(str(v) for v in (r.format, r.diversity, r.hyde, r.quality, r.entity)),
            str(r.think_bonus),
            f"{r.percentage:.1f}",
            r.rating,
        )
    console.print(table)
    if verbose:
        for r in data.results:
            plain(f"\n{r.query}  →  {r.percentage:.1f}% {r.rating}")
            plain("  entities: " + (", ".join(r.entities) or "-"))
            for d in r.deductions:
                plain(f"  - {d}")
            plain("  " + r.completion.replace("\n", "\n  "))
    s = data.need_summary()
    hist = ", ".join(f"{k} {v}" for k, v in s.ratings.items())
    console.print(
        f"mean reward {s.mean_reward:.4f} ({s.mean_percentage:.1f}%) on {s.n} queries; {hist}"
    )
    if samples := s.samples:
        runs = ", ".join(f"{m:.4f}" for m in samples.mean_rewards)
        console.print(f"{samples.k} sampled runs: mean reward {runs} (sd {samples.std:.4f})")
    cats = Table(title="per category")
    cats.add_column("category")
    cats.add_column("mean reward")
    for c, v in s.categories.items():
        cats.add_row(c, f"{v:.4f}")
    console.print(cats)


def eval_(
    model: Annotated[str, typer.Option(help="Model dir, hub id or .gguf file.")],
    adapter: Annotated[list[str] | None, typer.Option(help="Adapter(s) on the base.")] = None,
    backend: Annotated[str, typer.Option(help="auto, cuda, mlx or gguf.")] = "auto",
    device: Annotated[str | None, typer.Option(help="cpu or cuda.")] = None,
    queries: Annotated[Path | None, typer.Option(help="Default: eval.queries.")] = None,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="results.json")] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
    json_: Json = False,
    retrieval: Annotated[bool, typer.Option("--retrieval", help="Retrieval metrics.")] = False,
    serving: Annotated[
        bool,
        typer.Option(
            "--serving",
            help="Sample as QMD serves (config `serving`: temperature 0.7, top_k 20, top_p 0.8, "
            "k seeded samples per query); use with a .gguf model.",
        ),
    ] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    hf_jobs: Annotated[bool, typer.Option("--hf-jobs", help="Run on HF Jobs.")] = False,
    flavor: Annotated[str, typer.Option(help="HF Jobs hardware.")] = "a10g-small",
    timeout: Annotated[str, typer.Option(help="HF Jobs time limit.")] = "1h",
    namespace: Annotated[str | None, typer.Option(help="HF Jobs namespace.")] = None,
) -> None:
    """Generate one expansion per eval query (greedy by default) and score it.

    Example: qmd-ft eval --model outputs/merged -o outputs/eval/results.json -v
    """
    cfg = _config(config, set_)
    if hf_jobs:
        from qmd_ft.cli.jobs_cmd import submit_cli_job

        local = [p for p in (model, *(adapter or [])) if Path(p).exists()]
        gguf = backend == "gguf" or model.endswith(".gguf") or serving
        submit_cli_job(
            sys.argv[1:],
            config,
            flavor=flavor,
            timeout=timeout,
            namespace=namespace,
            extras=RUNTIME_REQUIREMENTS if gguf else (),  # llama.cpp for .gguf
            required=[*local, queries or cfg.eval.queries],
        )
        return
    if out is not None:
        check_output_file(out)  # before generating: a bad -o must not cost the whole run
    if serving and backend_for(model, backend) != "gguf":
        raise UserError(
            "--serving scores the file QMD loads: give a .gguf model (qmd-ft export gguf), "
            "or --backend gguf"
        )
    if retrieval:
        _eval_retrieval(model, list(adapter or []), cfg, backend, device, out, json_, serving)
        return
    qfile = queries or Path(cfg.eval.queries)
    qs = read_queries(qfile)
    with progress_bars() as on_progress:
        if serving:
            if adapter:
                raise UserError("--serving scores one merged model file: drop --adapter")
            data = run_sampled_eval(
                model,
                qfile,
                cfg.eval,
                cfg.serving,
                backend=backend,
                device=device,
                on_batch=counter(on_progress, "generating", len(qs) * cfg.serving.samples),
                queries=qs,
            )
        else:
            data = run_eval(
                model,
                list(adapter or []),
                qfile,
                cfg.eval,
                backend=backend,
                device=device,
                on_batch=counter(on_progress, "generating", len(qs)),
                queries=qs,
            )
    if out:
        write_results(data, out)
    if json_:
        print_json(data.to_json())
        return
    print_results(data, verbose)
    if out:
        console.print(f"results → {out}")


def _eval_retrieval(
    model: str,
    adapters: list[str],
    cfg: Config,
    backend: str,
    device: str | None,
    out: Path | None,
    json_: bool,
    serving: bool = False,
) -> None:
    """Retrieval metrics of raw queries, the model's expansions and gold expansions."""
    from qmd_ft.retrieval.cli_eval import retrieval_eval

    with err_console.status("generating expansions and searching the corpus"):
        data = retrieval_eval(
            model,
            adapters,
            cfg.eval,
            backend=backend,
            device=device,
            eval_dir=Path(cfg.eval.retrieval_dir),
            serving=cfg.serving if serving else None,
        )
    if out:
        write_results(data, out)
    if json_:
        print_json(data.to_json())
        return
    corpus = data.corpus
    assert corpus is not None  # retrieval_eval always records it
    table = Table(title=f"retrieval ({corpus.notes} notes, {corpus.queries} queries)")
    table.add_column("system")
    metrics = list(data.systems["raw"].mean.as_dict())
    for m in metrics:
        table.add_column(m)
    for name, summary in data.systems.items():
        table.add_row(name, *(f"{summary.mean.value(m):.3f}" for m in metrics))
    console.print(table)
    for name, comp in data.comparisons.items():
        parts = [
            f"{m} {c.mean_delta:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]" for m, c in comp.items()
        ]
        console.print(f"{name}: " + "; ".join(parts))
    if out:
        console.print(f"results → {out}")


def print_gate(verdict: Verdict) -> None:
    """Per-query rubric wins and losses, every rule with its numbers, then the decision."""
    if verdict.per_query:
        table = Table(title="candidate vs baseline (points = reward x 100)")
        for col in ("query", "candidate", "baseline", "delta"):
            table.add_column(col, overflow="fold")
        for row in verdict.per_query:
            if row.delta:
                style = "green" if row.delta > 0 else "red"
                table.add_row(
                    row.query,
                    str(row.candidate),
                    str(row.baseline),
                    f"[{style}]{row.delta:+.2f}[/{style}]",
                )
        console.print(table)
    console.print(gate_table(verdict))
    if verdict.passed:
        console.print("[green]gate: PASS[/green]")
    else:
        console.print("[red]gate: FAIL[/red] — " + "; ".join(verdict.reasons), markup=True)


def gate_table(verdict: Verdict) -> Table:
    """One row per rule (and per reported metric): the numbers the decision used."""
    table = Table(title=f"release gate (baseline: {verdict.baseline_source})")
    for col in ("rule", "metric", "candidate", "baseline", "delta [CI]", "requirement", "result"):
        table.add_column(col, overflow="fold")
    for rule in verdict.rules:
        rows = [(rule.metric, rule.numbers, rule.requirement, rule.status, rule.reason)]
        rows += [(m, n, "(reported)", "", "") for m, n in rule.reported.items()]
        for metric, n, requirement, status, reason in rows:
            nums = shown(metric, n) if n is not None else ("-", "-", "-")
            style = {"pass": "green", "fail": "red"}.get(status, "yellow")
            result = f"[{style}]{status}[/{style}]" if status else ""
            if reason and status != "fail":
                result += f" ({reason})"
            table.add_row(rule.name, metric, *nums, requirement, result)
    return table


def compare_cmd(
    candidate: Path,
    baseline: Path,
    json_: Json = False,
    retrieval_candidate: Annotated[
        Path | None, typer.Option(help="Candidate's `eval --retrieval` results.")
    ] = None,
    retrieval_baseline: Annotated[
        Path | None, typer.Option(help="Baseline's `eval --retrieval` results.")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Exit 0 only when the candidate passes every rule of the gate against the baseline.

    With retrieval results, the candidate's expansions must also help search (vs raw query)
    and, with the baseline's too, not regress (rules and floors: publish.retrieval).

    Example: qmd-ft compare outputs/eval/results.json deployed.json
    """
    from qmd_ft.gate import decide

    cfg = _config(config, set_)
    verdict = decide(
        cfg.publish,
        candidate=load_results(candidate),
        baseline=load_results(baseline),
        baseline_source=str(baseline),
        candidate_retrieval=(
            load_retrieval_results(retrieval_candidate) if retrieval_candidate else None
        ),
        baseline_retrieval=(
            load_retrieval_results(retrieval_baseline) if retrieval_baseline else None
        ),
    )
    if json_:
        print_json(verdict.to_dict())
    else:
        print_gate(verdict)
    if not verdict.passed:
        raise typer.Exit(1)


def publish(
    model: Annotated[Path, typer.Option(help="Merged model directory.")],
    eval_results: Annotated[Path, typer.Option("--eval", help="Its results.json.")],
    repo: Annotated[str | None, typer.Option(help="Default: publish.repo.")] = None,
    registry: Annotated[Path | None, typer.Option(help="Local registry dir (not the Hub).")] = None,
    gguf: Annotated[Path | None, typer.Option(help="GGUF dir for the -gguf repo.")] = None,
    retrieval: Annotated[
        Path | None, typer.Option(help="`eval --retrieval` results: no-regression rule.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Gate and show; upload nothing.")
    ] = False,
    force: Annotated[bool, typer.Option(help="Allow -v2/-sft/-grpo repo names.")] = False,
    backend: Annotated[str, typer.Option(help="To evaluate the deployed model.")] = "auto",
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Publish a model with its eval, only when it beats the deployed one.

    Example: qmd-ft publish --model outputs/merged --eval outputs/eval/results.json --dry-run
    """
    from qmd_ft.publish.destination import open_registry
    from qmd_ft.publish.release import (
        execute,
        harness_evaluator,
        harness_retrieval_evaluator,
        plan_release,
    )

    cfg = _config(config, set_)
    reg = open_registry(cfg.publish, registry)
    dest = repo or cfg.publish.repo

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
        )
    console.print(f"baseline: {plan.baseline_source}")
    print_gate(plan.verdict)
    if dry_run:
        console.print(f"dry run: would commit {len(plan.files)} file(s) to {reg.name}:{plan.repo}")
        plain(f"commit message: {plan.message}")
        for name in sorted(plan.files):
            plain(f"  {name}")
        if plan.gguf_repo:
            plain(f"and {len(plan.gguf_files)} file(s) to {reg.name}:{plan.gguf_repo}")
        if not plan.passed:
            raise typer.Exit(1)
        return
    commits = execute(plan, reg)
    console.print(
        f"published {plan.repo} ({commits[0]})"
        + (f" and {plan.gguf_repo} ({commits[1]})" if plan.gguf_repo else "")
    )
