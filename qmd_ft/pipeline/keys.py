"""The headline a stage shows in the pipeline's table: a training stage's last logged number
(from the trainer's `trainer_state.json`), a merged model's size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def trainer_log(adapter: Path) -> list[dict[str, Any]]:
    """The trainer's logged entries (TRL's and our MLX loop's `log_history`), oldest first."""
    state = Path(adapter) / "trainer_state.json"
    if state.is_file():
        return json.loads(state.read_text()).get("log_history", [])
    return []


def last_loss(adapter: Path) -> str:
    losses = [e["loss"] for e in trainer_log(adapter) if "loss" in e]
    return f"final loss {losses[-1]:.4f}" if losses else "trained"


def last_reward(adapter: Path) -> str:
    rewards = [e["reward"] for e in trainer_log(adapter) if "reward" in e]
    return f"last reward {rewards[-1]:.4f}" if rewards else "trained"


def size(path: Path) -> str:
    """A folder's total size in MB."""
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return f"{total / 1e6:.1f} MB"
