"""`qmd-ft export gguf` and `qmd-ft export verify`: GGUF files for llama.cpp, Ollama and QMD.

The heavy work lives in `qmd_ft.gguf`, imported only when a command runs, so `qmd-ft --help`
stays fast and works without numpy, gguf or llama-cpp-python installed. llama-cpp-python (the
optional `gguf-runtime` extra) is needed only for K-quants and verification.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer
from rich.table import Table

from qmd_ft.cli.common import console
from qmd_ft.cli.options import FlavorOpt, HfJobsOpt, NamespaceOpt, TimeoutOpt
from qmd_ft.cli.progress import progress_bars
from qmd_ft.config import ExportConfig
from qmd_ft.errors import UserError
from qmd_ft.gguf.runtime import RUNTIME_REQUIREMENTS, require_llama_cpp
from qmd_ft.outputs import check_output_dir

app = typer.Typer(help="Export models for serving.", no_args_is_help=True)


@app.command("gguf")
def export_gguf(
    model: Annotated[Path, typer.Option(help="HF-format Qwen3 model directory.")],
    quant: Annotated[
        str, typer.Option(help="Comma-separated: f32, f16, bf16, q8_0, q4_k_m, q5_k_m.")
    ] = "f16,q8_0,q4_k_m,q5_k_m",
    out: Annotated[
        Path | None, typer.Option(help=f"Output directory (default {ExportConfig().out}).")
    ] = None,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Skip loading and checking each file.")
    ] = False,
    hf_jobs: HfJobsOpt = False,
    flavor: FlavorOpt = "cpu-upgrade",
    timeout: TimeoutOpt = "1h",
    namespace: NamespaceOpt = None,
) -> None:
    """Write GGUF files (and quantize them) from an HF-format model directory.

    Each file is then loaded with llama-cpp-python and checked against transformers; a failed
    check keeps the files, marks them failed in manifest.json and exits 1. K-quants and
    verification need the gguf-runtime extra; f32, f16, bf16 and q8_0 with --no-verify do not.

    Example: qmd-ft export gguf --model outputs/merged --quant f16,q4_k_m
    """
    from qmd_ft.gguf import K_QUANT_TYPES, parse_types

    types = parse_types(quant)
    if not model.is_dir():
        raise UserError(f"{model}: not a directory (expected an HF-format model directory)")
    if hf_jobs:
        from qmd_ft.cli.jobs_cmd import submit_cli_job

        submit_cli_job(
            sys.argv[1:],
            None,
            flavor=flavor,
            timeout=timeout,
            namespace=namespace,
            # The job compiles llama.cpp only when K-quants or verification need it.
            extras=RUNTIME_REQUIREMENTS if not no_verify or set(types) & set(K_QUANT_TYPES) else (),
            required=[model],
        )
        return
    out_dir = check_output_dir(out or Path(ExportConfig().out))
    build_mod, _ = _gguf_modules()
    with progress_bars() as on_event:
        result = build_mod.build(model, out_dir, types, verify=not no_verify, on_event=on_event)

    table = Table(title=f"GGUF files in {result.out_dir}")
    for column in ("file", "type", "size", "verified"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for f in result.files:
        table.add_row(f.path.name, f.gguf_type, _size(f.size), f.status)
    console.print(table)
    console.print(f"Modelfile: {result.modelfile}\nmanifest: {result.manifest}", markup=False)
    if result.failed:
        first = result.failed[0]
        assert first.verification is not None
        names = ", ".join(f.path.name for f in result.failed)
        raise UserError(
            f"verification failed for {names} ({first.path.name}: "
            f"{first.verification.failure}); files kept, marked failed in {result.manifest}"
        )


@app.command("verify")
def export_verify(
    files: Annotated[list[Path], typer.Argument(help="GGUF file(s) to check.")],
    model: Annotated[
        Path | None,
        typer.Option(help="Source HF model dir: also compare tokens and logits with it."),
    ] = None,
) -> None:
    """Load GGUF files with llama-cpp-python and check format, metadata and generation.

    With --model, also the checks `export gguf` runs against transformers. Exits 1 when a
    file fails (a corrupt or truncated file included), naming the file and the reason.

    Example: qmd-ft export verify outputs/gguf/merged-Q4_K_M.gguf --model outputs/merged
    """
    _, verify_mod = _gguf_modules()
    require_llama_cpp("verifying GGUF files")  # before minutes of transformers reference
    ref = verify_mod.reference(model) if model is not None else None
    results = [verify_mod.verify_file(path, None, ref) for path in files]
    table = Table()
    table.add_column("file", overflow="fold")
    for column in ("type", "verified", "passed checks"):
        table.add_column(column)
    for r in results:
        checks = ", ".join(c.name for c in r.checks if c.ok)
        table.add_row(str(r.path), r.gguf_type or "?", "yes" if r.ok else "FAILED", checks)
    console.print(table)
    failed = [r for r in results if not r.ok]
    if failed:
        raise UserError(f"{failed[0].path}: {failed[0].failure}")


def _gguf_modules() -> tuple[ModuleType, ModuleType]:
    """`qmd_ft.gguf.build` and `qmd_ft.gguf.verify`, or which extra to install for them."""
    try:
        from qmd_ft.gguf import build, verify
    except ImportError as e:
        raise UserError(f"GGUF export needs numpy and gguf ({e}): pip install -e '.[gguf]'") from e
    return build, verify


def _size(n: int) -> str:
    """Bytes in the largest unit that keeps the number >= 1 (decimal units, as Ollama shows)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
