"""Options several commands share, declared once (as huggingface_hub's CLI does).

A command takes `backend: BackendOpt = "auto"` instead of spelling the option out, so a flag's
name and help read the same on every command, and a backend added to the registry shows up in
every `--backend` help (`qmd_ft.backend.choices_help`). Defaults stay with each command: the
same option may default differently (e.g. HF Jobs flavors per workload).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qmd_ft.backend import choices_help

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="YAML config: defaults, then this file, then --set."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="key.path=value: overrides a config key (repeatable)."),
]
StageSetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="key.path=value for every config; sft:key.path=value or grpo:key.path=value "
        "for one stage's config (repeatable).",
    ),
]
"""`--set` on commands that run both training stages, each with its own config."""

BackendOpt = Annotated[str, typer.Option("--backend", help=choices_help(training=True))]
"""A backend that trains (train, merge, pipeline, demo)."""
EvalBackendOpt = Annotated[str, typer.Option("--backend", help=choices_help(training=False))]
"""A backend that generates, gguf (llama.cpp) included (eval, publish's deployed-model eval)."""
DeviceOpt = Annotated[str | None, typer.Option("--device", help="cpu or cuda (cuda backend).")]

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Machine-readable output on stdout, nothing else there.")
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Plan only: show what would be done, change nothing.")
]

HfJobsOpt = Annotated[
    bool, typer.Option("--hf-jobs", help="Run this command on Hugging Face Jobs.")
]
FlavorOpt = Annotated[str, typer.Option("--flavor", help="HF Jobs hardware, e.g. a10g-small.")]
TimeoutOpt = Annotated[
    str, typer.Option("--timeout", help="HF Jobs time limit: 3600 (seconds), 90m, 1.5h.")
]
NamespaceOpt = Annotated[
    str | None,
    typer.Option("--namespace", help="HF Jobs: user or org the jobs run under (default: you)."),
]
