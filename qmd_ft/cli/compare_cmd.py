"""`qmd-ft compare`: the release gate on two saved evals, as an exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qmd_ft.cli.common import config_or_defaults, print_json
from qmd_ft.cli.options import ConfigOpt, JsonOpt, SetOpt
from qmd_ft.cli.render import print_gate
from qmd_ft.evaluation import load_results
from qmd_ft.retrieval.results import load_retrieval_results


def compare_cmd(
    candidate: Path,
    baseline: Path,
    json_: JsonOpt = False,
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

    cfg = config_or_defaults(config, set_)
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
