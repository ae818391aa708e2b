"""Training backends behind `qmd_ft.backend.Backend`: `cuda` (torch/TRL/PEFT), `mlx`."""
