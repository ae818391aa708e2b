"""`qmd-ft eval`: generate an expansion per eval query and score it (or search with them)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from qmd_ft.cli.common import config_or_defaults, console, err_console, plain, print_json
from qmd_ft.cli.options import (
    ConfigOpt,
    DeviceOpt,
    EvalBackendOpt,
    FlavorOpt,
    HfJobsOpt,
    JsonOpt,
    NamespaceOpt,
    SetOpt,
    TimeoutOpt,
)
from qmd_ft.cli.progress import progress_bars
from qmd_ft.config import Config
from qmd_ft.errors import UserError
from qmd_ft.evaluation import (
    EvalResults,
    backend_for,
    run_eval,
    run_sampled_eval,
    write_results,
)
from qmd_ft.gguf.runtime import RUNTIME_REQUIREMENTS
from qmd_ft.outputs import check_output_file
from qmd_ft.progress import counter
from qmd_ft.queries import read_queries


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
    backend: EvalBackendOpt = "auto",
    device: DeviceOpt = None,
    queries: Annotated[Path | None, typer.Option(help="Default: eval.queries.")] = None,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="results.json")] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
    json_: JsonOpt = False,
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
    hf_jobs: HfJobsOpt = False,
    flavor: FlavorOpt = "a10g-small",
    timeout: TimeoutOpt = "1h",
    namespace: NamespaceOpt = None,
) -> None:
    """Generate one expansion per eval query (greedy by default) and score it.

    Example: qmd-ft eval --model outputs/merged -o outputs/eval/results.json -v
    """
    cfg = config_or_defaults(config, set_)
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
