"""`python -m qmd_ft` runs the CLI."""

from qmd_ft.cli import main

main()
