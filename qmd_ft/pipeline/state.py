"""The pipeline's state store: which stage finished, on which inputs, with which artifact.

`<out>/pipeline_state.json` maps each stage to its last record: `done` (inputs hash, artifact,
headline) or `running` (a training stage that started and may be cut short). A stage whose
inputs hash matches a `done` record with its artifact still on disk is skipped; a training
stage cut short on the same inputs resumes (see `StateStore.begin`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qmd_ft.atomic import write_text_atomic
from qmd_ft.errors import UserError
from qmd_ft.gate import Verdict

STATE_FILE = "pipeline_state.json"


def stage_hash(*parts: Any) -> str:
    """A stage's inputs hash: the sha256 of its parts as canonical JSON."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class StageResult:
    """What a stage made, its headline number, and whether it ran or was skipped."""

    name: str
    artifact: str | None
    key: str
    seconds: float = 0.0
    skipped: bool = False
    inputs: str = ""
    verdict: Verdict | None = None
    """The gate's verdict, on the stages that reached one (compare, publish)."""


@dataclass
class StateStore:
    """The records of `<out>/pipeline_state.json`, read once and written whole on each change."""

    out: Path
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.out / STATE_FILE

    def load(self) -> None:
        """Read the last run's state; a file that is not a state (cut, edited) is refused."""
        if not self.path.is_file():
            return
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            state = None
        if not isinstance(state, dict) or not all(isinstance(v, dict) for v in state.values()):
            raise UserError(
                f"{self.path}: unreadable pipeline state: delete it to rerun every stage "
                "(finished stages' outputs are kept but redone)"
            )
        self.records = state

    def save(self) -> None:
        """Write the state whole (temp file + rename): a kill never leaves half of it."""
        self.out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, json.dumps(self.records, indent=2) + "\n")

    def cached(self, name: str, inputs: str) -> StageResult | None:
        """The last successful run of this stage, when its inputs are unchanged."""
        rec = self.records.get(name)
        if not rec or rec.get("inputs") != inputs or rec.get("status") != "done":
            return None
        artifact = rec.get("artifact")
        if not isinstance(artifact, str | None) or (artifact and not Path(artifact).exists()):
            return None
        return StageResult(name, artifact, str(rec.get("key", "")), skipped=True, inputs=inputs)

    def record(self, result: StageResult) -> None:
        """Keep a stage that ran as `done` (a skipped one keeps its earlier record)."""
        if result.skipped:
            return
        self.records[result.name] = {
            "status": "done",
            "inputs": result.inputs,
            "artifact": result.artifact,
            "key": result.key,
            "seconds": round(result.seconds, 1),
        }
        self.save()

    def resumes(self, name: str, inputs: str) -> bool:
        """Whether a training stage continues a run of the same inputs that was cut short."""
        rec = self.records.get(name) or {}
        return rec.get("status") == "running" and rec.get("inputs") == inputs

    def begin(self, name: str, inputs: str, output: Path) -> bool:
        """Mark a training stage as running; True when it resumes (see `resumes`).

        Output left by a run with other inputs is stale and removed, so checkpoints never mix.
        """
        resume = self.resumes(name, inputs)
        if not resume and output.exists():
            shutil.rmtree(output)
        self.records[name] = {"status": "running", "inputs": inputs}
        self.save()
        return resume
