"""`qmd-ft pipeline`: QMD's release checklist end to end, resumable stage by stage.

prepare → sft → grpo → merge → eval → compare → publish → gguf → publish_gguf. Each stage's
inputs are hashed (data, configs, the previous stage's hash); a stage whose hash matches its last
successful run and whose artifact still exists is skipped, so a re-run after a crash or an edit
redoes exactly what changed. State lives in `<out>/pipeline_state.json`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qmd_ft.backend import TrainRequest, get_backend
from qmd_ft.config import Config, load_config
from qmd_ft.data.prepare import inputs_hash, prepare
from qmd_ft.data.reader import resolve_paths
from qmd_ft.errors import UserError
from qmd_ft.evaluation import load_results, run_eval, write_results
from qmd_ft.gate import GateRule, compare
from qmd_ft.manifest import file_sha256
from qmd_ft.progress import ProgressFn, counter
from qmd_ft.publish.registry import Registry, open_registry
from qmd_ft.publish.release import (
    EvaluateDeployed,
    baseline_results,
    execute,
    harness_evaluator,
    plan_release,
)
from qmd_ft.queries import read_queries

STATE_FILE = "pipeline_state.json"


SFT_SECTIONS = {"model", "dataset", "training", "lora"}
"""The config sections that shape SFT weights: only these enter its stage's input hash, so an
eval or publish setting (which --set applies to every config) does not retrain."""
GRPO_SECTIONS = SFT_SECTIONS | {"grpo"}


def _hash(*parts: Any) -> str:
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


@dataclass
class Pipeline:
    """Everything the stages share; stages run in order and read each other's results."""

    cfg: Config
    sft_cfg: Config
    grpo_cfg: Config
    backend: str
    out: Path
    registry: Registry
    dry_run: bool = False
    device: str | None = None
    max_steps: int | None = None
    log: Callable[[str], None] = print
    on_progress: ProgressFn | None = None
    results: dict[str, StageResult] = field(default_factory=dict)
    state: dict[str, dict[str, Any]] = field(default_factory=dict)

    # -- bookkeeping -------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.out / STATE_FILE

    def load_state(self) -> None:
        if self.state_path.is_file():
            self.state = json.loads(self.state_path.read_text(encoding="utf-8"))

    def save_state(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.state_path.write_text(json.dumps(self.state, indent=2) + "\n", encoding="utf-8")

    def cached(self, name: str, inputs: str) -> StageResult | None:
        """The last successful run of this stage, when its inputs are unchanged."""
        rec = self.state.get(name)
        if not rec or rec["inputs"] != inputs or rec.get("status") != "done":
            return None
        if rec["artifact"] and not Path(rec["artifact"]).exists():
            return None
        return StageResult(name, rec["artifact"], rec["key"], skipped=True, inputs=inputs)

    def record(self, result: StageResult) -> None:
        self.results[result.name] = result
        if not result.skipped:
            self.state[result.name] = {
                "status": "done",
                "inputs": result.inputs,
                "artifact": result.artifact,
                "key": result.key,
                "seconds": round(result.seconds, 1),
            }
            self.save_state()

    def inputs_of(self, name: str) -> str:
        r = self.results.get(name)
        return r.inputs if r else ""

    def begin_training(self, name: str, inputs: str, cfg: Config) -> TrainRequest:
        """Mark a training stage as running; resume it only if it was cut short unchanged.

        A run interrupted with the same inputs continues from its last checkpoint; output left
        by a run with other inputs is stale and removed, so checkpoints never mix.
        """
        out = Path(cfg.model.output)
        rec = self.state.get(name) or {}
        resume = rec.get("status") == "running" and rec.get("inputs") == inputs
        if not resume and out.exists():
            shutil.rmtree(out)
        self.state[name] = {"status": "running", "inputs": inputs}
        self.save_state()
        return TrainRequest(
            config=cfg,
            data_dir=Path(cfg.dataset.name),
            output_dir=out,
            device=self.device,
            max_steps=self.max_steps,
            resume=resume,
        )

    # -- stages ------------------------------------------------------------------------------

    def stage_prepare(self) -> StageResult:
        ds = self.sft_cfg.dataset
        files = resolve_paths([ds.data_glob])
        evals = Path(self.cfg.eval.queries)
        settings = {"val_fraction": ds.eval_split, "seed": ds.seed}
        inputs = inputs_hash(files, evals if evals.is_file() else None, settings)
        out = self.out / "data"
        if hit := self.cached("prepare", inputs):
            return hit
        res = prepare(files, out, evals if evals.is_file() else None, ds.eval_split, ds.seed)
        c = res.info["counts"]
        return StageResult(
            "prepare", str(out), f"train {c['train']} / val {c['val']}", inputs=inputs
        )

    def stage_sft(self) -> StageResult:
        inputs = _hash(
            self.inputs_of("prepare"),
            self.sft_cfg.model_dump(include=SFT_SECTIONS),
            self.backend,
            self.max_steps,
        )
        if hit := self.cached("sft", inputs):
            return hit
        adapter = get_backend(self.backend).sft(self.begin_training("sft", inputs, self.sft_cfg))
        return StageResult("sft", str(adapter), _last_loss(adapter), inputs=inputs)

    def stage_grpo(self) -> StageResult:
        inputs = _hash(
            self.inputs_of("sft"), self.grpo_cfg.model_dump(include=GRPO_SECTIONS), self.max_steps
        )
        if hit := self.cached("grpo", inputs):
            return hit
        self.grpo_cfg.model.sft = self.results["sft"].artifact
        req = self.begin_training("grpo", inputs, self.grpo_cfg)
        adapter = get_backend(self.backend).grpo(req)
        return StageResult("grpo", str(adapter), _last_reward(adapter), inputs=inputs)

    def merge_inputs(self) -> tuple[str, list[str]]:
        """(base, adapters): a fully fine-tuned SFT model is the base for the GRPO adapter."""
        base = self.sft_cfg.model.base
        adapters = []
        for name in ("sft", "grpo"):
            r = self.results.get(name)
            if r is None or r.artifact is None:
                continue
            path = Path(r.artifact)
            if (path / "adapter_config.json").is_file():
                adapters.append(str(path))
            else:
                base, adapters = str(path), []
        return base, adapters

    def stage_merge(self) -> StageResult:
        inputs = _hash(self.inputs_of("grpo") or self.inputs_of("sft"), "merge")
        if hit := self.cached("merge", inputs):
            return hit
        out = self.out / "merged"
        base, adapters = self.merge_inputs()
        get_backend(self.backend).merge(base, adapters, out)
        return StageResult("merge", str(out), _size(out), inputs=inputs)

    def stage_eval(self) -> StageResult:
        merged = self.results["merge"].artifact
        qfile = Path(self.cfg.eval.queries)
        inputs = _hash(self.inputs_of("merge"), self.cfg.eval.model_dump(), file_sha256(qfile))
        if hit := self.cached("eval", inputs):
            return hit
        queries = read_queries(qfile)
        data = run_eval(
            merged,
            [],
            qfile,
            self.cfg.eval,
            backend=self.backend,
            device=self.device,
            on_batch=counter(self.on_progress, "evaluating", len(queries)),
            queries=queries,
        )
        path = self.out / "eval" / "results.json"
        write_results(data, path)
        return StageResult(
            "eval", str(path), f"mean reward {data['summary']['mean_reward']:.4f}", inputs=inputs
        )

    @property
    def rule(self) -> GateRule:
        p = self.cfg.publish
        return GateRule(p.min_delta, p.min_ci_lower, p.bootstrap_samples)

    @property
    def evaluator(self) -> EvaluateDeployed:
        return harness_evaluator(self.backend, self.cfg.eval, self.device, self.on_progress)

    def stage_compare(self) -> StageResult:
        cand = load_results(self.results["eval"].artifact)
        repo = self.cfg.publish.repo
        baseline, source = baseline_results(self.registry, repo, cand, self.evaluator)
        if baseline is None:
            return StageResult("compare", None, f"{source}: first release")
        gate = compare(cand, baseline, self.rule)
        verdict = "PASS" if gate.passed else "FAIL: " + "; ".join(gate.reasons)
        return StageResult("compare", None, f"{gate.mean_delta:+.2f} points, {verdict}")

    def gate_passed(self) -> bool:
        r = self.results.get("compare")
        return r is None or "FAIL" not in r.key

    def stage_publish(self) -> StageResult:
        if not self.gate_passed():
            return StageResult("publish", None, "skipped: gate failed")
        merged = Path(self.results["merge"].artifact)
        plan = plan_release(
            merged,
            Path(self.results["eval"].artifact),
            self.registry,
            self.cfg.publish.repo,
            self.rule,
            self.evaluator,
        )
        if self.dry_run:
            self.log(
                f"dry run: would publish {len(plan.files)} file(s) to {plan.repo}: {plan.message}"
            )
            return StageResult("publish", None, f"dry run → {plan.repo}")
        if not plan.passed:
            return StageResult("publish", None, "gate failed: " + "; ".join(plan.gate.reasons))
        commit = execute(plan, self.registry)[0]
        return StageResult("publish", f"{self.registry.name}:{plan.repo}", commit)

    def stage_gguf(self) -> StageResult:
        from qmd_ft.gguf.build import build

        merged = self.results["merge"].artifact
        inputs = _hash(self.inputs_of("merge"), self.cfg.export.model_dump())
        if hit := self.cached("gguf", inputs):
            return hit
        out = self.out / "gguf"
        export = self.cfg.export
        built = build(Path(merged), out, list(export.quants), export.verify, self.on_progress)
        if built.failed:
            names = ", ".join(f.path.name for f in built.failed)
            raise UserError(f"GGUF verification failed: {names} (see {built.manifest})")
        summary = ", ".join(f"{f.gguf_type} {f.size / 1e6:.1f} MB {f.status}" for f in built.files)
        return StageResult("gguf", str(out), summary, inputs=inputs)

    def stage_publish_gguf(self) -> StageResult:
        if not self.gate_passed() or "gguf" not in self.results:
            return StageResult("publish_gguf", None, "skipped")
        repo = self.cfg.publish.resolved_gguf_repo
        gguf_dir = Path(self.results["gguf"].artifact)
        files = {p.name: p for p in sorted(gguf_dir.iterdir()) if p.is_file()}
        if self.dry_run:
            self.log(f"dry run: would publish {len(files)} GGUF file(s) to {repo}")
            return StageResult("publish_gguf", None, f"dry run → {repo}")
        commit = self.registry.upload(repo, files, "qmd-ft release: GGUF builds")
        return StageResult("publish_gguf", f"{self.registry.name}:{repo}", commit)

    def run(self, stages: list[str], on_stage: Callable[[StageResult], None]) -> None:
        """Run the named stages in order; each result goes to `on_stage` as it finishes."""
        if "gguf" in stages:  # a missing llama.cpp runtime is said before hours of training
            from qmd_ft.gguf.runtime import require_runtime_for

            require_runtime_for(self.cfg.export.quants, self.cfg.export.verify)
        self.load_state()
        for name in stages:
            start = time.perf_counter()
            result = getattr(self, f"stage_{name}")()
            result.seconds = time.perf_counter() - start
            self.record(result)
            on_stage(result)


def gate_refused(results: list[StageResult]) -> bool:
    """Whether a run's gate refused the release: compare failed, or publish's own check did."""
    return any(
        (r.name == "compare" and "FAIL" in r.key)
        or (r.name == "publish" and r.key.startswith(("gate failed", "skipped: gate failed")))
        for r in results
    )


def _trainer_log(adapter: Path) -> list[dict[str, Any]]:
    state = Path(adapter) / "trainer_state.json"
    if state.is_file():
        return json.loads(state.read_text()).get("log_history", [])
    return []


def _last_loss(adapter: Path) -> str:
    losses = [e["loss"] for e in _trainer_log(adapter) if "loss" in e]
    return f"final loss {losses[-1]:.4f}" if losses else "trained"


def _last_reward(adapter: Path) -> str:
    rewards = [e["reward"] for e in _trainer_log(adapter) if "reward" in e]
    return f"last reward {rewards[-1]:.4f}" if rewards else "trained"


def _size(path: Path) -> str:
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return f"{total / 1e6:.1f} MB"


STAGE_PREFIXES = ("sft", "grpo")


def split_overrides(overrides: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """(--set items for every config, {stage: items for that stage's config only})."""
    common: list[str] = []
    staged: dict[str, list[str]] = {stage: [] for stage in STAGE_PREFIXES}
    for item in overrides:
        stage, sep, rest = item.partition(":")
        if sep and stage in staged and "=" not in stage:
            staged[stage].append(rest)
        else:
            common.append(item)
    return common, staged


def build_pipeline(
    config: Path,
    overrides: list[str] | None,
    backend: str,
    *,
    dry_run: bool = False,
    registry: Path | None = None,
    device: str | None = None,
    max_steps: int | None = None,
    base_model: str | None = None,
    log: Callable[[str], None] = print,
    on_progress: ProgressFn | None = None,
) -> Pipeline:
    """Load the pipeline config and the SFT/GRPO configs it names; wire their paths.

    `overrides` (--set) apply to all three configs, as every command's --set does to its
    config; `sft:KEY=VALUE` / `grpo:KEY=VALUE` to that stage's config only. The pipeline's own
    wiring (data dir, stage outputs, the SFT model GRPO starts from) wins over them, and
    `base_model` (the CLI's --model) replaces model.base in both stage configs.
    """
    from qmd_ft.backend import resolve_name

    common, staged = split_overrides(overrides or [])
    cfg = load_config(config, common)
    out = Path(cfg.pipeline.out)
    data_dir = str(out / "data")
    base = [f"model.base={base_model}"] if base_model else []
    sft_cfg = load_config(
        cfg.pipeline.sft_config,
        [
            *common,
            *staged["sft"],
            f"dataset.name={data_dir}",
            f"model.output={out / 'sft'}",
            *base,
        ],
    )
    grpo_cfg = load_config(
        cfg.pipeline.grpo_config,
        [
            *common,
            *staged["grpo"],
            f"dataset.name={data_dir}",
            f"model.output={out / 'grpo'}",
            f"model.sft={out / 'sft'}",
            f"model.base={sft_cfg.model.base}",
        ],
    )
    reg = open_registry(cfg.publish, registry)
    return Pipeline(
        cfg,
        sft_cfg,
        grpo_cfg,
        resolve_name(backend),
        out,
        reg,
        dry_run=dry_run,
        device=device,
        max_steps=max_steps,
        log=log,
        on_progress=on_progress,
    )
