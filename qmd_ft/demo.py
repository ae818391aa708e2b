"""`qmd-ft demo`: the whole job on the embedded default, offline, on a laptop CPU.

Builds the tiny Qwen3 from the project's own data, evaluates it untrained and "deploys" that
to a local registry, then runs the same pipeline as a real release (configs/demo/*.yaml: full
fine-tuning, a short GRPO) and gates the result against the untrained model, exports and
verifies GGUF (verifies only where the optional llama-cpp-python is installed: the export
itself is pure Python), and prints the before/after table. Nothing is downloaded.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qmd_ft.evaluation import load_results, run_eval, write_results
from qmd_ft.gguf.runtime import missing_runtime, runtime_available
from qmd_ft.pipeline import StageResult, build_pipeline
from qmd_ft.progress import ProgressFn, counter
from qmd_ft.publish.registry import EVAL_FILE, LocalRegistry
from qmd_ft.publish.release import model_files
from qmd_ft.queries import read_queries

DEMO_CONFIG = Path("configs/demo/pipeline.yaml")


@dataclass
class DemoReport:
    """What the demo measured and made."""

    score_before: float
    score_after: float
    seconds: float
    stages: list[StageResult]
    artifacts: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "score_before": round(self.score_before, 4),
            "score_after": round(self.score_after, 4),
            "seconds": round(self.seconds, 1),
            "stages": [
                {
                    "stage": s.name,
                    "seconds": round(s.seconds, 1),
                    "key": s.key,
                    "artifact": s.artifact,
                    "skipped": s.skipped,
                }
                for s in self.stages
            ],
            "artifacts": self.artifacts,
        }


def run_demo(
    out: Path,
    backend: str,
    *,
    log: Callable[[str], None] = print,
    on_stage: Callable[[StageResult], None] = lambda _: None,
    fresh: bool = True,
    max_steps: int | None = None,
    on_progress: ProgressFn | None = None,
) -> DemoReport:
    """Build, deploy-untrained, run the pipeline, compare; returns the measured report.

    `max_steps` caps both training stages (a smoke run; the demo's score needs the full run).
    """
    from qmd_ft.tiny_model import build_tiny_model

    start = time.perf_counter()
    if fresh and out.exists():
        shutil.rmtree(out)
    base = out / "tiny-base"
    t0 = time.perf_counter()
    build_tiny_model(base, seed=0)
    on_stage(StageResult("build tiny model", str(base), "offline Qwen3", time.perf_counter() - t0))

    overrides = [f"pipeline.out={out / 'pipeline'}", f"publish.registry={out / 'registry'}"]
    if not runtime_available():
        log(f"GGUF files are exported unverified: {missing_runtime('verifying them')}")
        overrides.append("export.verify=false")
    pipe = build_pipeline(
        DEMO_CONFIG,
        overrides,
        backend,
        base_model=str(base),
        max_steps=max_steps,
        log=log,
        on_progress=on_progress,
    )
    t0 = time.perf_counter()
    queries = read_queries(pipe.cfg.eval.queries)
    before = run_eval(
        str(base),
        [],
        Path(pipe.cfg.eval.queries),
        pipe.cfg.eval,
        backend=pipe.backend,
        on_batch=counter(on_progress, "evaluating the untrained model", len(queries)),
        queries=queries,
    )
    before_path = out / "eval_before.json"
    write_results(before, before_path)
    registry = LocalRegistry(out / "registry")
    registry.upload(
        pipe.cfg.publish.repo,
        {EVAL_FILE: before_path} | model_files(base),
        "deploy the untrained tiny model (demo baseline)",
    )
    on_stage(
        StageResult(
            "eval untrained + deploy",
            str(before_path),
            f"mean reward {before['summary']['mean_reward']:.4f}",
            time.perf_counter() - t0,
        )
    )

    stages: list[StageResult] = []

    def record(result: StageResult) -> None:
        stages.append(result)
        on_stage(result)

    pipe.run(pipe.cfg.pipeline.stages, record)
    score_after = load_results(pipe.results["eval"].artifact)["summary"]["mean_reward"]
    artifacts = {s.name: s.artifact for s in stages if s.artifact}
    artifacts["eval_before"] = str(before_path)
    return DemoReport(
        score_before=before["summary"]["mean_reward"],
        score_after=score_after,
        seconds=time.perf_counter() - start,
        stages=stages,
        artifacts=artifacts,
    )
