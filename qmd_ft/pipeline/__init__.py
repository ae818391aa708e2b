"""`qmd-ft pipeline`: QMD's release checklist end to end, resumable stage by stage.

`state` (the state store and stage input hashes), `stages` (the nine stages, their plan and
checks), `evaluators` (`GateEvals`: how the gate scores the candidate and the deployed model),
`keys` (each stage's headline number), `wiring` (`build_pipeline`: the three configs, override
splitting, paths).
"""

from qmd_ft.pipeline.stages import GREEDY_FILE, Pipeline, PlannedStage, gate_refused
from qmd_ft.pipeline.state import STATE_FILE, StageResult
from qmd_ft.pipeline.wiring import build_pipeline

__all__ = [
    "GREEDY_FILE",
    "STATE_FILE",
    "Pipeline",
    "PlannedStage",
    "StageResult",
    "build_pipeline",
    "gate_refused",
]
