"""How the pipeline's gate scores a model: the candidate in the eval stage, the deployed one
when its published results cannot be used.

Both are scored the same way, so the gate compares like with like: with `serving.enabled` as
QMD serves it (the `serving.quant` GGUF, sampled `serving.samples` times per query), else the
merged model's greedy eval through the training backend. The retrieval eval's corpus indexes
(about a minute to embed the notes) are built once and shared by every model scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from qmd_ft.config import Config
from qmd_ft.errors import UserError
from qmd_ft.evaluation import EvalResults, model_hash, run_sampled_eval
from qmd_ft.progress import ProgressFn, counter
from qmd_ft.publish.release import (
    EvaluateDeployed,
    harness_evaluator,
    harness_retrieval_evaluator,
)
from qmd_ft.queries import read_queries
from qmd_ft.results import ExportedFrom
from qmd_ft.retrieval.results import RetrievalResults

if TYPE_CHECKING:
    from qmd_ft.retrieval.run import Indexes

ResultsDoc = TypeVar("ResultsDoc", EvalResults, RetrievalResults)


def serving_file(cfg: Config, export: Path) -> Path:
    """The GGUF file QMD would load (`serving.quant`) from an export folder."""
    quant = cfg.serving.quant
    found = sorted(export.glob(f"*-{quant.upper()}.gguf"))
    if not found:
        raise UserError(f"no {quant} GGUF in {export}: add it to export.quants")
    return found[0]


@dataclass
class GateEvals:
    """The gate's evaluators for one pipeline: its configs, backend, device and output folder.

    `export`, where given, is the candidate's own GGUF export (the gguf stage's folder): the
    served file is read from it. Without it (the deployed model, the demo's untrained one) the
    serving quant is exported here, unverified, since it is only read, never published.
    """

    cfg: Config
    backend: str
    out: Path
    device: str | None = None
    on_progress: ProgressFn | None = None
    indexes: Indexes | None = None
    """The retrieval corpus indexes, built on first use (`retrieval_indexes`)."""

    @property
    def with_retrieval(self) -> bool:
        """The retrieval eval runs when the gate requires it (configs/pipeline.yaml does)."""
        return self.cfg.publish.retrieval.required

    def retrieval_indexes(self) -> Indexes:
        """The corpus indexes, built once per pipeline."""
        from qmd_ft.retrieval.run import build_indexes

        if self.indexes is None:
            self.indexes = build_indexes(Path(self.cfg.eval.retrieval_dir) / "notes")
        return self.indexes

    def served_gguf(self, model: Path, export: Path | None = None) -> Path:
        """The serving GGUF of `model`: from `export` when given, else one exported now."""
        if export is not None:
            return serving_file(self.cfg, export)
        from qmd_ft.gguf.build import build

        quant = self.cfg.serving.quant
        out = self.out / "deployed-gguf" / (model_hash(str(model)) or "")[:16]
        built = build(Path(model), out, [quant], verify=False, on_event=self.on_progress)
        return built.files[0].path

    @staticmethod
    def _exported_from(doc: ResultsDoc, model: Path) -> ResultsDoc:
        """Record which model the scored GGUF was exported from (publish checks this hash)."""
        doc.provenance.exported_from = ExportedFrom(
            model=str(model), model_sha256=model_hash(str(model))
        )
        return doc

    def serving(
        self, model: Path, candidate: EvalResults | None = None, *, export: Path | None = None
    ) -> EvalResults:
        """`model` (a merged dir) scored as served: its serving GGUF, sampled k times."""
        qfile = Path(self.cfg.eval.queries)
        queries = read_queries(qfile)
        settings = self.cfg.serving
        total = len(queries) * settings.samples
        doc = run_sampled_eval(
            str(self.served_gguf(model, export)),
            qfile,
            self.cfg.eval,
            settings,
            backend="gguf",
            device=self.device,
            on_batch=counter(self.on_progress, f"evaluating {settings.quant} (sampled)", total),
            queries=queries,
        )
        return self._exported_from(doc, model)

    @property
    def deployed(self) -> EvaluateDeployed:
        """How the deployed model is evaluated when its eval cannot be used: as the candidate."""
        if self.cfg.serving.enabled:
            return self.serving
        return harness_evaluator(self.backend, self.cfg.eval, self.device, self.on_progress)

    def retrieval(self, model: Path, *, export: Path | None = None) -> RetrievalResults:
        """`model`'s retrieval results, generated the way the gate's evals are."""
        if not self.cfg.serving.enabled:
            evaluate = harness_retrieval_evaluator(
                self.backend, self.cfg.eval, self.device, self.retrieval_indexes
            )
            return evaluate(model)
        from qmd_ft.retrieval.cli_eval import retrieval_eval

        doc = retrieval_eval(
            str(self.served_gguf(model, export)),
            [],
            self.cfg.eval,
            backend="gguf",
            device=self.device,
            eval_dir=Path(self.cfg.eval.retrieval_dir),
            indexes=self.retrieval_indexes(),
            serving=self.cfg.serving,
        )
        return self._exported_from(doc, model)
