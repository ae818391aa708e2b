"""`qmd-ft data …`: one module per subcommand; each sorts its arguments and calls `qmd_ft.data`."""

from __future__ import annotations

import typer

from qmd_ft.cli.data import clean, generate, import_hf, prepare, stats, validate, variants

app = typer.Typer(help="Validate, prepare and inspect training data.", no_args_is_help=True)
app.command("validate")(validate.validate_cmd)
app.command("prepare")(prepare.prepare_cmd)
app.command("stats")(stats.stats_cmd)
app.command("variants")(variants.variants_cmd)
app.command("migrate-only")(variants.migrate_only_cmd)
app.command("clean")(clean.clean_cmd)
app.command("generate")(generate.generate_cmd)
app.command("import-hf")(import_hf.import_hf_cmd)
