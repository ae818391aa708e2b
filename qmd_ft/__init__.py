"""qmd-ft: train, evaluate, gate, export and publish QMD's query-expansion model.

The core package never imports torch or mlx at module level, so data, scoring and gating
commands start fast on any machine; model work lives in `backends/`.
"""

__version__ = "0.1.0"
