"""The backends behind `qmd_ft.backend.Backend`, one package each, named in its `REGISTRY`."""
