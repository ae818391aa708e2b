"""The nine stages of `qmd-ft pipeline`, run in order and skipped when unchanged.

prepare → sft → grpo → merge → gguf → eval → compare → publish → publish_gguf. Each cached
stage's inputs are hashed (data, configs, the previous stage's hash, see `stage_inputs`); a
stage whose hash matches its last successful run and whose artifact still exists is skipped, so
a re-run after a crash or an edit redoes exactly what changed. `plan` says what a run would do
without doing it; `run` checks both training stages (`qmd_ft.train.checks`) before either
trains, so a GRPO config error shows before SFT runs.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from qmd_ft.backend import TrainRequest, get_backend
from qmd_ft.config import Config
from qmd_ft.data.prepare import inputs_hash, prepare
from qmd_ft.data.reader import resolve_paths
from qmd_ft.errors import UserError
from qmd_ft.evaluation import load_results, run_eval, write_results
from qmd_ft.gate import Verdict
from qmd_ft.manifest import file_sha256
from qmd_ft.pipeline.evaluators import GateEvals
from qmd_ft.pipeline.keys import last_loss, last_reward, size
from qmd_ft.pipeline.state import StageResult, StateStore, stage_hash
from qmd_ft.progress import ProgressFn, counter
from qmd_ft.publish.registry import EVAL_FILE, RETRIEVAL_FILE, Registry
from qmd_ft.publish.release import execute, judge, load_retrieval, plan_release
from qmd_ft.queries import read_queries
from qmd_ft.train.checks import preflight
from qmd_ft.train.plan import Planned, train_request
from qmd_ft.train.run import train_stage

GREEDY_FILE = "greedy_results.json"
"""The merged model's greedy eval, kept beside the gate's sampled GGUF eval for the card."""

SFT_SECTIONS = {"model", "dataset", "training", "lora"}
"""The config sections that shape SFT weights: only these enter its stage's input hash, so an
eval or publish setting (which --set applies to every config) does not retrain."""
GRPO_SECTIONS = SFT_SECTIONS | {"grpo"}

CACHED_STAGES = ("prepare", "sft", "grpo", "merge", "gguf", "eval")
"""Stages skipped when their inputs are unchanged; compare and the publish stages always run."""
TRAINING_STAGES = ("sft", "grpo")


@dataclass(frozen=True)
class PlannedStage:
    """What a run would do with one stage: run it or skip it, and where its output goes."""

    name: str
    runs: bool
    output: str | None
    note: str = ""
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
    publish: bool = True
    """False (`--no-publish`): every stage runs, the publish stages upload nothing."""
    device: str | None = None
    max_steps: int | None = None
    log: Callable[[str], None] = print
    on_progress: ProgressFn | None = None
    results: dict[str, StageResult] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    """Each cached stage's inputs hash, as this run computed it (`stage_inputs`)."""
    store: StateStore = field(init=False)
    evals: GateEvals = field(init=False)
    """How the gate scores the candidate and the deployed model (`evaluators`)."""

    def __post_init__(self) -> None:
        self.store = StateStore(self.out)
        self.evals = GateEvals(self.cfg, self.backend, self.out, self.device, self.on_progress)

    def report_progress(self, on_progress: ProgressFn | None) -> None:
        """Send the long stages' progress (evals, GGUF export) to `on_progress` from now on."""
        self.on_progress = self.evals.on_progress = on_progress

    # -- bookkeeping -------------------------------------------------------------------------
    def load_state(self) -> None:
        """Read the last run's state (see `StateStore.load`)."""
        self.store.load()

    def record(self, result: StageResult) -> None:
        self.results[result.name] = result
        self.store.record(result)

    def inputs_of(self, name: str) -> str:
        return self.inputs.get(name, "")

    def stage_config(self, name: str) -> Config:
        """The config a training stage trains with."""
        return self.sft_cfg if name == "sft" else self.grpo_cfg

    def begin_training(self, name: str, inputs: str, cfg: Config) -> TrainRequest:
        """Mark a training stage as running; resume it only if it was cut short unchanged.

        A run interrupted with the same inputs continues from its last checkpoint; output left
        by a run with other inputs is stale and removed, so checkpoints never mix.
        """
        resume = self.store.begin(name, inputs, Path(cfg.model.output))
        return train_request(cfg, self.device, self.max_steps, resume)

    def stage_inputs(self, name: str) -> str:
        """The inputs hash of a cached stage, from its data, settings and earlier stages'."""
        self.inputs[name] = getattr(self, f"_inputs_{name}")()
        return self.inputs[name]

    def _inputs_prepare(self) -> str:
        ds = self.sft_cfg.dataset
        evals = Path(self.cfg.eval.queries)
        settings = {"val_fraction": ds.eval_split, "seed": ds.seed}
        files = resolve_paths([ds.data_glob])
        return inputs_hash(files, evals if evals.is_file() else None, settings)

    def _inputs_sft(self) -> str:
        return stage_hash(
            self.inputs_of("prepare"),
            self.sft_cfg.model_dump(include=SFT_SECTIONS),
            self.backend,
            self.max_steps,
        )

    def _inputs_grpo(self) -> str:
        return stage_hash(
            self.inputs_of("sft"), self.grpo_cfg.model_dump(include=GRPO_SECTIONS), self.max_steps
        )

    def _inputs_merge(self) -> str:
        return stage_hash(self.inputs_of("grpo") or self.inputs_of("sft"), "merge")

    def _inputs_gguf(self) -> str:
        return stage_hash(self.inputs_of("merge"), self.cfg.export.model_dump())

    def _inputs_eval(self) -> str:
        serving = self.cfg.serving if self.cfg.serving.enabled else None
        return stage_hash(
            self.inputs_of("merge"),
            self.cfg.eval.model_dump(),
            file_sha256(Path(self.cfg.eval.queries)),
            self.evals.with_retrieval,
            serving.model_dump() if serving else None,
            self.inputs_of("gguf") if serving else None,
        )

    # -- plan and checks ---------------------------------------------------------------------
    def outputs(self, name: str) -> str:
        """Where a stage's output goes (a registry repo for the publish stages)."""
        return {
            "prepare": str(self.out / "data"),
            "sft": self.sft_cfg.model.output,
            "grpo": self.grpo_cfg.model.output,
            "merge": str(self.out / "merged"),
            "gguf": str(self.out / "gguf"),
            "eval": str(self.eval_dir),
            "compare": str(self.out / "compare" / "verdict.json"),
            "publish": f"{self.registry.name}:{self.cfg.publish.repo}",
            "publish_gguf": f"{self.registry.name}:{self.cfg.publish.resolved_gguf_repo}",
        }[name]

    def plan(self, stages: list[str]) -> list[PlannedStage]:
        """What `run(stages)` would do, per the state file; reads, writes nothing."""
        self.load_state()
        planned = []
        for name in stages:
            if name in CACHED_STAGES:
                inputs = self.stage_inputs(name)
                unchanged = self.store.cached(name, inputs) is not None
                note = "unchanged, skipped" if unchanged else "runs"
                if not unchanged and name in TRAINING_STAGES and self.store.resumes(name, inputs):
                    note = "resumes its cut run"
                planned.append(PlannedStage(name, not unchanged, self.outputs(name), note, inputs))
            elif name.startswith("publish") and not self.publish:
                planned.append(PlannedStage(name, True, None, "uploads nothing (--no-publish)"))
            elif name.startswith("publish"):
                note = "uploads if the gate passes"
                planned.append(PlannedStage(name, True, self.outputs(name), note))
            else:
                planned.append(PlannedStage(name, True, self.outputs(name), "runs"))
        return planned

    def check(self, planned: list[PlannedStage]) -> None:
        """Everything that can fail before the first stage starts, for every stage.

        The training stages that will run are checked together as `qmd-ft train` checks
        them, so a GRPO error shows before SFT trains. Each is checked as it will start: a
        stale output `begin_training` removes is checked as the empty dir it becomes.
        """
        names = [p.name for p in planned]
        if "gguf" in names:  # a missing llama.cpp runtime is said before hours of training
            from qmd_ft.gguf.runtime import require_runtime_for

            require_runtime_for(self.cfg.export.quants, self.cfg.export.verify)
        training = [p for p in planned if p.name in TRAINING_STAGES and p.runs]
        if not training:
            return
        with tempfile.TemporaryDirectory() as cleared:
            plans, requests = [], []
            for p in training:
                cfg = self.stage_config(p.name)
                source = getattr(self.cfg.pipeline, f"{p.name}_config")
                resume = self.store.resumes(p.name, p.inputs)
                req = train_request(cfg, self.device, self.max_steps, resume)
                if not resume and req.output_dir.exists():
                    req = replace(req, output_dir=Path(cleared) / p.name)
                plans.append(Planned(p.name, cfg, Path(source)))
                requests.append(req)
            preflight(get_backend(self.backend), plans, requests)

    # -- stages ------------------------------------------------------------------------------

    def stage_prepare(self) -> StageResult:
        inputs = self.stage_inputs("prepare")
        if hit := self.store.cached("prepare", inputs):
            return hit
        ds = self.sft_cfg.dataset
        evals = Path(self.cfg.eval.queries)
        out = self.out / "data"
        files = resolve_paths([ds.data_glob])
        res = prepare(files, out, evals if evals.is_file() else None, ds.eval_split, ds.seed)
        c = res.info["counts"]
        return StageResult(
            "prepare", str(out), f"train {c['train']} / val {c['val']}", inputs=inputs
        )

    def stage_sft(self) -> StageResult:
        inputs = self.stage_inputs("sft")
        if hit := self.store.cached("sft", inputs):
            return hit
        req = self.begin_training("sft", inputs, self.sft_cfg)
        adapter = train_stage(get_backend(self.backend), "sft", req)
        return StageResult("sft", str(adapter), last_loss(adapter), inputs=inputs)

    def stage_grpo(self) -> StageResult:
        inputs = self.stage_inputs("grpo")
        if hit := self.store.cached("grpo", inputs):
            return hit
        self.grpo_cfg.model.sft = self.results["sft"].artifact
        req = self.begin_training("grpo", inputs, self.grpo_cfg)
        adapter = train_stage(get_backend(self.backend), "grpo", req)
        return StageResult("grpo", str(adapter), last_reward(adapter), inputs=inputs)

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
        inputs = self.stage_inputs("merge")
        if hit := self.store.cached("merge", inputs):
            return hit
        out = self.out / "merged"
        base, adapters = self.merge_inputs()
        get_backend(self.backend).merge(base, adapters, out)
        return StageResult("merge", str(out), size(out), inputs=inputs)

    @property
    def eval_dir(self) -> Path:
        return self.out / "eval"

    def gguf_export(self) -> Path:
        """This run's GGUF export, which the serving eval reads the candidate's served file from."""
        gguf = self.results.get("gguf")
        if gguf is None or gguf.artifact is None:
            raise UserError("serving.enabled needs the gguf stage to run before eval")
        return Path(gguf.artifact)

    def stage_eval(self) -> StageResult:
        """The gate's evals: rubric (and retrieval when the gate needs it) of what ships.

        With `serving.enabled` the gate's numbers come from the serving GGUF, sampled as QMD
        samples (eval_results.json, retrieval_results.json), and the greedy eval of the merged
        model is kept beside them (greedy_results.json) for the card. Otherwise the merged
        model's greedy eval is the gate's.
        """
        merged = self.results["merge"].artifact
        qfile = Path(self.cfg.eval.queries)
        serving = self.cfg.serving if self.cfg.serving.enabled else None
        inputs = self.stage_inputs("eval")
        if hit := self.store.cached("eval", inputs):
            return hit
        queries = read_queries(qfile)
        greedy = run_eval(
            merged,
            [],
            qfile,
            self.cfg.eval,
            backend=self.backend,
            device=self.device,
            on_batch=counter(self.on_progress, "evaluating", len(queries)),
            queries=queries,
        )
        out = self.eval_dir
        if out.exists():
            shutil.rmtree(out)  # no retrieval file of an earlier model may stay beside it
        key = f"greedy mean reward {greedy.need_summary().mean_reward:.4f}"
        if serving is None:
            write_results(greedy, out / EVAL_FILE)
        else:
            write_results(greedy, out / GREEDY_FILE)
            sampled = self.evals.serving(Path(merged), export=self.gguf_export())
            write_results(sampled, out / EVAL_FILE)
            summary = sampled.need_summary()
            spread = summary.samples
            assert spread is not None  # run_sampled_eval sets it
            key += (
                f"; {self.cfg.serving.quant} sampled {summary.mean_reward:.4f} "
                f"(sd {spread.std:.4f} over {spread.k})"
            )
        if self.evals.with_retrieval:
            export = self.gguf_export() if serving else None
            found = self.evals.retrieval(Path(merged), export=export)
            write_results(found, out / RETRIEVAL_FILE)
            mean = found.systems["model"].mean
            key += f"; recall@10 {mean.recall_at_10:.3f}, ndcg@10 {mean.ndcg_at_10:.3f}"
        return StageResult("eval", str(out), key, inputs=inputs)

    def candidate_retrieval(self) -> Path | None:
        path = self.eval_dir / RETRIEVAL_FILE
        return path if path.is_file() else None

    def stage_compare(self) -> StageResult:
        """The gate's verdict, written beside the run; publish and the CLI read this object."""
        merged = Path(self.results["merge"].artifact)
        ret = self.candidate_retrieval()
        verdict = judge(
            self.cfg.publish,
            self.registry,
            self.cfg.publish.repo,
            load_results(self.eval_dir / EVAL_FILE),
            load_retrieval(ret, merged) if ret else None,
            self.evals.deployed,
            self.evals.retrieval,
            model=merged,
        )
        path = self.out / "compare" / "verdict.json"
        write_results(verdict, path)
        return StageResult("compare", str(path), verdict.headline(), verdict=verdict)

    @property
    def verdict(self) -> Verdict | None:
        """The latest verdict of this run (publish's, else compare's), if one was reached."""
        for name in ("publish", "compare"):
            r = self.results.get(name)
            if r is not None and r.verdict is not None:
                return r.verdict
        return None

    def gate_passed(self) -> bool:
        return self.verdict is None or self.verdict.passed

    def stage_publish(self) -> StageResult:
        if not self.gate_passed():
            return StageResult("publish", None, "skipped: gate refused", verdict=self.verdict)
        merged = Path(self.results["merge"].artifact)
        plan = plan_release(
            merged,
            self.eval_dir / EVAL_FILE,
            self.registry,
            self.cfg.publish.repo,
            self.cfg.publish,
            self.evals.deployed,
            retrieval=self.candidate_retrieval(),
            evaluate_deployed_retrieval=self.evals.retrieval,
            verdict=self.verdict,
            greedy=greedy if (greedy := self.eval_dir / GREEDY_FILE).is_file() else None,
        )
        if not self.publish:
            self.log(
                f"--no-publish: would publish {len(plan.files)} file(s) to {plan.repo}: "
                f"{plan.message}"
            )
            key = f"skipped: --no-publish (would publish to {plan.repo})"
            return StageResult("publish", None, key, verdict=plan.verdict)
        if plan.deployed:  # a run again after the release: nothing new to commit
            key = f"already published (commit {plan.parent})"
            return StageResult(
                "publish", f"{self.registry.name}:{plan.repo}", key, verdict=plan.verdict
            )
        if not plan.passed:
            return StageResult(
                "publish",
                None,
                "gate refused: " + "; ".join(plan.verdict.reasons),
                verdict=plan.verdict,
            )
        commit = execute(plan, self.registry)[0]
        return StageResult(
            "publish", f"{self.registry.name}:{plan.repo}", commit, verdict=plan.verdict
        )

    def stage_gguf(self) -> StageResult:
        from qmd_ft.gguf.build import build

        merged = self.results["merge"].artifact
        inputs = self.stage_inputs("gguf")
        if hit := self.store.cached("gguf", inputs):
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
        if "gguf" not in self.results:
            return StageResult("publish_gguf", None, "skipped")
        if not self.cfg.export.verify:  # only verified files are ever published
            return StageResult("publish_gguf", None, "skipped: GGUF files not verified")
        # The same release plan as `publish --gguf`: verified files, card and eval, pinned. The
        # twin follows the main repo: published only when that serves this candidate (the
        # publish stage deployed it, now or in a run whose twin commit failed).
        plan = plan_release(
            Path(self.results["merge"].artifact),
            self.eval_dir / EVAL_FILE,
            self.registry,
            self.cfg.publish.repo,
            self.cfg.publish,
            self.evals.deployed,
            gguf_dir=Path(self.results["gguf"].artifact),
            gguf_repo=self.cfg.publish.resolved_gguf_repo,
            retrieval=self.candidate_retrieval(),
            evaluate_deployed_retrieval=self.evals.retrieval,
            verdict=self.verdict,
        )
        repo = plan.gguf_repo
        if not self.publish:
            self.log(f"--no-publish: would publish {len(plan.gguf_files)} GGUF file(s) to {repo}")
            return StageResult(
                "publish_gguf", None, f"skipped: --no-publish (would publish to {repo})"
            )
        if not plan.deployed:
            return StageResult("publish_gguf", None, f"skipped: {plan.repo} does not serve it")
        if plan.gguf_deployed:  # a run again after the release: nothing new to commit
            key = f"already published (commit {plan.gguf_parent})"
            return StageResult("publish_gguf", f"{self.registry.name}:{repo}", key)
        commit = execute(plan, self.registry)[-1]
        return StageResult("publish_gguf", f"{self.registry.name}:{repo}", commit)

    def run(self, stages: list[str], on_stage: Callable[[StageResult], None]) -> None:
        """Check every stage, then run them in order; each result goes to `on_stage`."""
        self.check(self.plan(stages))
        for name in stages:
            start = time.perf_counter()
            result = getattr(self, f"stage_{name}")()
            result.seconds = time.perf_counter() - start
            self.record(result)
            on_stage(result)


def gate_refused(results: list[StageResult]) -> bool:
    """Whether a run's gate refused the release: any verdict it reached did not pass."""
    return any(r.verdict is not None and not r.verdict.passed for r in results)
