"""What `--resume` must keep: the number of steps the run was planned for.

Both backends schedule the learning rate over the run's total steps, and a checkpoint carries
the optimizer as that schedule left it. Resuming under another total cannot continue either
schedule: on the cuda backend the first resumed step even runs at the rate the checkpoint
stored (0 at the end of a finished cosine or linear run), so "train 4 more steps" would take
one step that changes nothing and then jump to a rate the new schedule reached elsewhere. A
changed step budget is therefore refused with the way out, rather than trained wrongly.

Checkpoints of both backends are `OUT/checkpoint-N/` with `trainer_state.json`, whose
`max_steps` is the planned total (transformers writes it; the mlx backend records it too).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from qmd_ft.atomic import write_text_atomic
from qmd_ft.errors import UserError

PREFIX = "checkpoint-"
STATE = "trainer_state.json"


def _readable_state(checkpoint: Path) -> bool:
    """Whether the checkpoint's trainer_state.json parses (a kill mid-write cuts it)."""
    try:
        return isinstance(json.loads((checkpoint / STATE).read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):
        return False


def latest_checkpoint(out: Path) -> Path | None:
    """The complete checkpoint with the highest step: one whose trainer_state.json (written
    last) is there and readable. A newer one that is not is skipped, with a line saying so,
    rather than picked and failing to load (or loading half a state)."""
    if not out.is_dir():
        return None
    found = sorted(
        ((int(p.name[len(PREFIX) :]), p) for p in out.glob(f"{PREFIX}*")
         if p.name[len(PREFIX) :].isdigit() and p.is_dir()),
        reverse=True,
    )  # fmt: skip
    for _, checkpoint in found:
        if _readable_state(checkpoint):
            return checkpoint
        if (checkpoint / STATE).exists():
            print(
                f"skipping {checkpoint}: its {STATE} is unreadable (cut mid-write?)",
                file=sys.stderr,
            )
    return None


def planned_steps(checkpoint: Path) -> int | None:
    """The total steps the checkpoint's run was planned for, when its state records it."""
    try:
        state = json.loads((checkpoint / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    steps = state.get("max_steps") if isinstance(state, dict) else None
    return steps if isinstance(steps, int) and steps > 0 else None


def record_planned_steps(checkpoint: Path, total: int) -> None:
    """Add `max_steps` to a checkpoint's trainer_state.json (as transformers writes it)."""
    path = checkpoint / STATE
    state = json.loads(path.read_text(encoding="utf-8"))
    state["max_steps"] = total
    write_text_atomic(path, json.dumps(state) + "\n")


def check_resume_steps(checkpoint: Path | str | None, max_steps: int | None) -> None:
    """Refuse to resume `checkpoint` towards another total than the one it was planned for.

    `max_steps` None (a budget the trainer computes from epochs) cannot be compared here and
    passes; so does a checkpoint that records no total.
    """
    if checkpoint is None or max_steps is None:
        return
    planned = planned_steps(Path(checkpoint))
    if planned is None or planned == max_steps:
        return
    raise UserError(
        f"--resume with max_steps {max_steps}: {checkpoint} belongs to a run planned for "
        f"{planned} steps, and its learning-rate schedule cannot be stretched or cut; resume "
        f"with --max-steps {planned}, or train {max_steps} steps into another --output"
    )
