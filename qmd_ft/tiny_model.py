"""The tiny Qwen3 for tests, demos and exporters: `build_tiny_model` and its parts.

The code lives in the `qmd_ft.tiny` package, one module per part (see its docstring for the
choices behind each); this module keeps the import path that tests, the demo and the CLI use.
"""

from qmd_ft.tiny import *  # noqa: F403 (the package's public API, re-exported)
from qmd_ft.tiny import __all__ as __all__
