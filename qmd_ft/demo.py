"""`qmd-ft demo`: the whole job on the embedded default, offline, on a laptop CPU.

Builds the tiny Qwen3 from the project's own data, evaluates it untrained (rubric and
retrieval) and "deploys" that to a local registry, then runs the same pipeline as a real
release (configs/demo/*.yaml: full fine-tuning, a short GRPO, the real gate's rules) and gates
the result against the untrained model, exports and verifies GGUF (verifies only where the
optional llama-cpp-python is installed: the export itself is pure Python), and reports
before/after. Nothing is downloaded.

The demo tells the truth about search: a tiny model can learn the expansions' shape (the
rubric) long before its words help search, and the gate then refuses the release with its
reason. The demo still exports (and verifies) GGUF and succeeds: refusing is the gate working.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qmd_ft.evaluation import load_results, run_eval, write_results
from qmd_ft.gate import Verdict
from qmd_ft.gguf.runtime import missing_runtime, runtime_available
from qmd_ft.pipeline import StageResult, build_pipeline
from qmd_ft.progress import ProgressFn, counter
from qmd_ft.publish.registry import EVAL_FILE, RETRIEVAL_FILE, LocalRegistry
from qmd_ft.publish.release import model_files
from qmd_ft.queries import read_queries
from qmd_ft.retrieval.results import RetrievalResults, load_retrieval_results

DEMO_CONFIG = Path("configs/demo/pipeline.yaml")
SHOWN_METRICS = ("recall@10", "ndcg@10")
"""The retrieval numbers the demo reports per system."""


def _shown(doc: RetrievalResults, system: str) -> dict[str, float]:
    mean = doc.systems[system].mean
    return {m: round(mean.value(m), 4) for m in SHOWN_METRICS}


@dataclass
class DemoReport:
    """What the demo measured and made."""

    score_before: float
    score_after: float
    seconds: float
    stages: list[StageResult]
    retrieval_raw: dict[str, float]
    retrieval_before: dict[str, float]
    retrieval_after: dict[str, float]
    verdict: Verdict | None
    released: bool
    artifacts: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "score_before": round(self.score_before, 4),
            "score_after": round(self.score_after, 4),
            "retrieval_raw": self.retrieval_raw,
            "retrieval_before": self.retrieval_before,
            "retrieval_after": self.retrieval_after,
            "released": self.released,
            "gate": self.verdict.to_dict() if self.verdict else None,
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
    overrides: list[str] | None = None,
) -> DemoReport:
    """Build, deploy-untrained, run the pipeline, gate; returns the measured report.

    One set of retrieval indexes (about a minute to embed the corpus) serves the untrained
    model, the candidate and the raw-query baseline.

    `max_steps` caps both training stages (a smoke run; the demo's score needs the full run).
    `overrides` are `--set` items for the demo's configs (as `qmd-ft pipeline --set`).
    """
    from qmd_ft.tiny_model import build_tiny_model

    start = time.perf_counter()
    if fresh and out.exists():
        shutil.rmtree(out)
    base = out / "tiny-base"
    t0 = time.perf_counter()
    build_tiny_model(base, seed=0)
    on_stage(StageResult("build tiny model", str(base), "offline Qwen3", time.perf_counter() - t0))

    settings = [*(overrides or [])]
    if not runtime_available():
        log(f"GGUF files are exported unverified: {missing_runtime('verifying them')}")
        settings.append("export.verify=false")
    pipe = build_pipeline(
        DEMO_CONFIG,
        [*settings, f"pipeline.out={out / 'pipeline'}", f"publish.registry={out / 'registry'}"],
        backend,
        base_model=str(base),
        max_steps=max_steps,
        log=log,
        on_progress=on_progress,
    )
    t0 = time.perf_counter()
    queries = read_queries(pipe.cfg.eval.queries)
    if pipe.cfg.serving.enabled:  # scored as the candidate will be: its GGUF, sampled
        before = pipe.evals.serving(base)
    else:
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
    retrieval_before = pipe.evals.retrieval(base)
    retrieval_before_path = out / "retrieval_before.json"
    write_results(retrieval_before, retrieval_before_path)
    registry = LocalRegistry(out / "registry")
    registry.upload(
        pipe.cfg.publish.repo,
        {EVAL_FILE: before_path, RETRIEVAL_FILE: retrieval_before_path} | model_files(base),
        "deploy the untrained tiny model (demo baseline)",
    )
    shown = _shown(retrieval_before, "model")
    on_stage(
        StageResult(
            "eval untrained + deploy",
            str(before_path),
            f"mean reward {before.need_summary().mean_reward:.4f}; "
            f"recall@10 {shown['recall@10']:.3f}, ndcg@10 {shown['ndcg@10']:.3f}",
            time.perf_counter() - t0,
        )
    )

    stages: list[StageResult] = []

    def record(result: StageResult) -> None:
        stages.append(result)
        on_stage(result)

    pipe.run(pipe.cfg.pipeline.stages, record)
    eval_dir = Path(pipe.results["eval"].artifact)
    score_after = load_results(eval_dir / EVAL_FILE).need_summary().mean_reward
    retrieval_after = load_retrieval_results(eval_dir / RETRIEVAL_FILE)
    artifacts = {s.name: s.artifact for s in stages if s.artifact}
    artifacts["eval_before"] = str(before_path)
    artifacts["retrieval_before"] = str(retrieval_before_path)
    published = pipe.results.get("publish")
    return DemoReport(
        score_before=before.need_summary().mean_reward,
        score_after=score_after,
        seconds=time.perf_counter() - start,
        stages=stages,
        retrieval_raw=_shown(retrieval_after, "raw"),
        retrieval_before=shown,
        retrieval_after=_shown(retrieval_after, "model"),
        verdict=pipe.verdict,
        released=published is not None and published.artifact is not None,
        artifacts=artifacts,
    )
