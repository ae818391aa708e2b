"""A training run whose loss turned infinite or NaN did not train: say so, and fail.

Both backends leave `trainer_state.json` (the logged losses and gradient norms, step by step)
and a manifest with the final metrics in the output dir. One non-finite number there means the
weights were updated with it and are garbage; reporting such a run as "trained" (exit 0)
would let it flow into eval, merge and publish.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from qmd_ft.errors import UserError
from qmd_ft.manifest import read_manifest

WATCHED = ("loss", "train_loss", "grad_norm", "eval_loss")


def _bad(record: dict[str, Any]) -> tuple[str, float] | None:
    for key in WATCHED:
        value = record.get(key)
        if isinstance(value, int | float) and not math.isfinite(value):
            return key, value
    return None


def check_finite(out: Path) -> None:
    """Raise a UserError when the run in `out` logged a non-finite loss or gradient norm."""
    try:
        state = json.loads((out / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    history = state.get("log_history", []) if isinstance(state, dict) else []
    metrics = (read_manifest(out) or {}).get("metrics") or {}
    for record in [*(r for r in history if isinstance(r, dict)), metrics]:
        found = _bad(record)
        if found is not None:
            key, value = found
            step = record.get("step", metrics.get("global_step", "?"))
            raise UserError(
                f"{out}: training diverged: {key} became {value} at step {step}, so the weights "
                "are not usable; lower training.learning_rate (or max_grad_norm) and train "
                "again into a fresh --output"
            )
