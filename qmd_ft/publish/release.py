"""The gated release: never without an eval, never a worse model, one destination repo.

Flow: check the eval belongs to this model → fetch the deployed model's eval (or evaluate the
deployed model with the same harness) → gate → card + results + weights in one commit whose
message carries the eval summary → GGUF files, when given, to the `-gguf` twin.

Each commit replaces its repo's whole content and is pinned to the revision the gate read. When
the deployed model already is the candidate (a release run again, or one whose `-gguf` commit
failed after the main one landed), the verdict says so (`already_deployed`), the main repo is
left as it is and only the twin is (re)published.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from qmd_ft.config import EvalConfig, ModelConfig, PublishConfig
from qmd_ft.errors import UserError
from qmd_ft.evaluation import EvalResults, load_results, model_hash, run_eval, write_results
from qmd_ft.gate import Verdict, already_deployed, decide
from qmd_ft.manifest import MANIFEST, file_sha256, origin_model, read_manifest
from qmd_ft.progress import ProgressFn, counter
from qmd_ft.publish.card import commit_message, render_card
from qmd_ft.publish.registry import (
    EVAL_FILE,
    RETRIEVAL_FILE,
    UNPINNED,
    Registry,
    check_repo_name,
)
from qmd_ft.retrieval.results import RetrievalResults, load_retrieval_results

if TYPE_CHECKING:
    from qmd_ft.retrieval.run import Indexes

GREEDY_EVAL_FILE = "eval_results_greedy.json"
"""The merged model's greedy eval, shipped beside a sampled (served-GGUF) gate eval."""

EvaluateDeployed = Callable[[Path, EvalResults], EvalResults]
"""(deployed model dir, candidate results) → results of the deployed model, same harness."""

EvaluateDeployedRetrieval = Callable[[Path], RetrievalResults]
"""Deployed model dir → its `eval --retrieval` results, same harness as the candidate's."""


@dataclass
class ReleasePlan:
    """What a release would upload, and why it may or may not go ahead."""

    repo: str
    files: dict[str, Path]
    message: str
    card: str
    verdict: Verdict
    gguf_repo: str | None = None
    gguf_files: dict[str, Path] = field(default_factory=dict)
    gguf_card: str | None = None
    parent: str | None = UNPINNED
    """The repo's revision the gate read: the release commit must land right on it."""
    gguf_parent: str | None = UNPINNED
    deployed: bool = False
    """The repo already serves this very model: only the `-gguf` twin is left to publish."""
    gguf_deployed: bool = False
    """The twin already holds this model's GGUF files too: nothing is left to publish."""

    @property
    def passed(self) -> bool:
        return self.deployed or self.verdict.passed

    @property
    def baseline_source(self) -> str:
        return self.verdict.baseline_source


def harness_evaluator(
    backend: str,
    gen: EvalConfig,
    device: str | None = None,
    on_progress: ProgressFn | None = None,
) -> EvaluateDeployed:
    """Evaluate the deployed model exactly as the candidate was: same queries and settings."""

    def evaluate(path: Path, candidate: EvalResults) -> EvalResults:
        prov = candidate.provenance
        qfile = Path(prov.queries_file or "")
        if not qfile.is_file():
            raise UserError(
                f"{qfile}: the candidate's queries file is needed to eval the deployed model"
            )
        settings = gen.model_copy(update=prov.generation)
        total = len(candidate.results)
        return run_eval(
            str(path),
            [],
            qfile,
            settings,
            backend=backend,
            device=device,
            on_batch=counter(on_progress, "evaluating the deployed model", total),
        )

    return evaluate


def harness_retrieval_evaluator(
    backend: str,
    gen: EvalConfig,
    device: str | None = None,
    indexes: Callable[[], Indexes] | None = None,
) -> EvaluateDeployedRetrieval:
    """Retrieval-evaluate a model as the candidate was: same backend, settings and corpus.

    `indexes` hands over already built corpus indexes (built on first call), so a run that
    evaluates several models embeds the notes once.
    """

    def evaluate(path: Path) -> RetrievalResults:
        from qmd_ft.retrieval.cli_eval import retrieval_eval

        built = indexes() if indexes is not None else None
        return retrieval_eval(
            str(path),
            [],
            gen,
            backend=backend,
            device=device,
            eval_dir=Path(gen.retrieval_dir),
            indexes=built,
        )

    return evaluate


def model_files(model: Path) -> dict[str, Path]:
    """Every file of a model directory by its path in the repo (hidden files left out)."""
    return {
        str(p.relative_to(model)): p
        for p in sorted(model.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def _assert_no_secret(texts: list[str]) -> None:
    token = os.environ.get("HF_TOKEN")
    if token and any(token in t for t in texts):
        raise UserError("refusing to publish: the HF token appears in the card or message")


def baseline_results(
    registry: Registry,
    repo: str,
    candidate: EvalResults,
    evaluate_deployed: EvaluateDeployed,
    revision: str | None = None,
) -> tuple[EvalResults | None, str]:
    """The deployed model's eval (at `revision`, default the latest): its published results
    file when generated like the candidate's, else a fresh eval, else none."""
    path = registry.fetch_file(repo, EVAL_FILE, revision)
    published = load_results(path) if path is not None else None
    if published is not None and same_generation(published, candidate):
        return published, f"{registry.name}:{repo}/{EVAL_FILE}"
    if registry.exists(repo, revision):
        source = "evaluated deployed model"
        if published is not None:
            source += f" (its {EVAL_FILE} was generated differently)"
        return evaluate_deployed(registry.download(repo, revision), candidate), source
    return None, "nothing deployed yet"


def same_generation(a: EvalResults | RetrievalResults, b: EvalResults | RetrievalResults) -> bool:
    """Whether two results were generated alike (both greedy, or the same sampling)."""
    return a.provenance.sampling == b.provenance.sampling


def produced_from(doc: EvalResults | RetrievalResults, model: Path) -> bool:
    """Whether a results document scores `model`, or a GGUF exported from it."""
    prov = doc.provenance
    exported = prov.exported_from.model_sha256 if prov.exported_from else None
    return model_hash(str(model)) in (prov.model_sha256, exported)


def baseline_retrieval(
    registry: Registry,
    repo: str,
    candidate: RetrievalResults,
    evaluate: EvaluateDeployedRetrieval | None,
    revision: str | None = None,
) -> RetrievalResults | None:
    """The deployed model's retrieval results: its published file (when generated like the
    candidate's), else a fresh run, else none."""
    path = registry.fetch_file(repo, RETRIEVAL_FILE, revision)
    published = load_retrieval_results(path) if path is not None else None
    if published is not None and same_generation(published, candidate):
        return published
    if evaluate is not None and registry.exists(repo, revision):
        return evaluate(registry.download(repo, revision))
    return None


def judge(
    publish: PublishConfig,
    registry: Registry,
    repo: str,
    candidate: EvalResults,
    candidate_retrieval: RetrievalResults | None,
    evaluate_deployed: EvaluateDeployed,
    evaluate_deployed_retrieval: EvaluateDeployedRetrieval | None = None,
    revision: str | None = None,
    model: Path | None = None,
) -> Verdict:
    """The gate's verdict on a candidate against what `repo` serves at `revision` (default:
    the latest).

    `model`, the candidate's merged dir, when given: a repo that already serves it (its
    published eval was produced from this very model) gets the `already_deployed` verdict
    instead of a comparison of the model with itself.
    """
    if model is not None:
        at = revision if revision is not None else registry.head(repo)
        if _serves(registry, repo, at, model):
            where = f"{registry.name}:{repo}/{EVAL_FILE}" + (f" at {at}" if at else "")
            return already_deployed(where, model_hash(str(model)) or "")
    baseline, source = baseline_results(registry, repo, candidate, evaluate_deployed, revision)
    base_retrieval = None
    if baseline is not None and candidate_retrieval is not None:
        base_retrieval = baseline_retrieval(
            registry, repo, candidate_retrieval, evaluate_deployed_retrieval, revision
        )
    return decide(
        publish,
        candidate=candidate,
        baseline=baseline,
        baseline_source=source,
        candidate_retrieval=candidate_retrieval,
        baseline_retrieval=base_retrieval,
    )


def load_retrieval(path: Path, model: Path) -> RetrievalResults:
    """A candidate's `eval --retrieval` results, checked to come from this model."""
    doc = load_retrieval_results(path)
    if not produced_from(doc, model):
        raise UserError(f"{path} was not produced from {model} (model hash differs)")
    return doc


def plan_release(
    model: Path,
    results_path: Path,
    registry: Registry,
    repo: str,
    publish: PublishConfig,
    evaluate_deployed: EvaluateDeployed,
    *,
    gguf_dir: Path | None = None,
    gguf_repo: str | None = None,
    force_name: bool = False,
    retrieval: Path | None = None,
    evaluate_deployed_retrieval: EvaluateDeployedRetrieval | None = None,
    verdict: Verdict | None = None,
    greedy: Path | None = None,
    staging: Path | None = None,
) -> ReleasePlan:
    """Everything up to (not including) the upload; raises UserError on a bad input.

    `verdict`, when given, is the one the pipeline's compare stage reached on these very
    files; otherwise the gate is judged here (`judge`), the same way. `greedy`: the merged
    model's greedy eval, shown on the card and shipped beside a sampled gate eval.
    `staging`: where the card and results files to upload are written (default: a new
    temporary folder), so a caller can remove them, e.g. after a dry run.
    """
    check_repo_name(repo, force=force_name)
    if not (model / "config.json").is_file():
        raise UserError(f"{model}: not a merged model directory (no config.json)")
    results = load_results(results_path)
    if not produced_from(results, model):
        raise UserError(
            f"{results_path} was not produced from {model} (model hash differs): "
            "evaluate this model before publishing it"
        )
    retrieval_doc = load_retrieval(retrieval, model) if retrieval is not None else None
    greedy_doc = load_results(greedy) if greedy is not None else None
    if greedy_doc is not None and not produced_from(greedy_doc, model):
        raise UserError(f"{greedy} was not produced from {model} (model hash differs)")
    parent = registry.head(repo)
    if verdict is None:
        verdict = judge(
            publish,
            registry,
            repo,
            results,
            retrieval_doc,
            evaluate_deployed,
            evaluate_deployed_retrieval,
            revision=parent,
            model=model,
        )
    deployed = _serves(registry, repo, parent, model)
    if verdict.deployed and not deployed:
        raise UserError(
            f"{registry.name}:{repo} changed since the gate found this candidate deployed: "
            "run the same command again to judge it against what the repo now serves"
        )
    if deployed and not verdict.deployed:  # the verdict came before this release landed
        source = f"{verdict.baseline_source}: the deployed model is this candidate"
        verdict = verdict.model_copy(update={"baseline_source": source})
    manifest = read_manifest(model) or {}
    # A merged model's manifest lists its training stages; a trained directory has its config.
    training = manifest.get("stages") or (manifest.get("config") or {}).get("training")
    base_model = origin_model(str(model)) if manifest else ModelConfig().base
    card = render_card(
        repo,
        results,
        base_model=base_model,
        training=training,
        verdict=verdict,
        retrieval=retrieval_doc,
        greedy=greedy_doc,
    )
    message = commit_message(results, verdict)
    staging = staging or Path(tempfile.mkdtemp(prefix="qmd-ft-release-"))
    (staging / "README.md").write_text(card, encoding="utf-8")
    write_results(results, staging / EVAL_FILE)
    files = model_files(model)
    files.pop(MANIFEST, None)
    files |= {"README.md": staging / "README.md", EVAL_FILE: staging / EVAL_FILE}
    if retrieval_doc is not None:
        write_results(retrieval_doc, staging / RETRIEVAL_FILE)
        files[RETRIEVAL_FILE] = staging / RETRIEVAL_FILE
    if greedy_doc is not None:
        write_results(greedy_doc, staging / GREEDY_EVAL_FILE)
        files[GREEDY_EVAL_FILE] = staging / GREEDY_EVAL_FILE
    if (model / MANIFEST).is_file():
        files["qmd_ft_manifest.json"] = model / MANIFEST
    plan = ReleasePlan(repo, files, message, card, verdict, parent=parent, deployed=deployed)
    if gguf_dir is not None:
        verified = verified_gguf_files(gguf_dir)
        plan.gguf_repo = gguf_repo or f"{repo}-gguf"
        check_repo_name(plan.gguf_repo, force=True)
        plan.gguf_parent = registry.head(plan.gguf_repo)
        names = sorted(n for n in verified if n.endswith(".gguf"))
        plan.gguf_card = render_card(
            plan.gguf_repo,
            results,
            base_model=repo,
            verdict=verdict,
            retrieval=retrieval_doc,
            gguf_files=names,
        )
        (staging / "README.gguf.md").write_text(plan.gguf_card, encoding="utf-8")
        plan.gguf_files = verified | {
            "README.md": staging / "README.gguf.md",
            EVAL_FILE: staging / EVAL_FILE,
        }
        plan.gguf_deployed = deployed and _twin_holds(
            registry, plan.gguf_repo, plan.gguf_parent, model, names
        )
    _assert_no_secret([card, message, plan.gguf_card or ""])
    return plan


def _serves(registry: Registry, repo: str, revision: str | None, model: Path) -> bool:
    """Whether `repo` at `revision` already serves `model` (its published eval says so): a
    release whose `-gguf` commit failed after the main one landed, run again."""
    path = registry.fetch_file(repo, EVAL_FILE, revision) if revision else None
    return path is not None and produced_from(load_results(path), model)


def _twin_holds(
    registry: Registry, repo: str, revision: str | None, model: Path, names: list[str]
) -> bool:
    """Whether the `-gguf` twin at `revision` already holds `model`'s release: its eval is
    this model's and its card lists every GGUF file planned (a quant exported since is not
    there yet). Reads two small files, never the GGUFs."""
    if not _serves(registry, repo, revision, model):
        return False
    card = registry.fetch_file(repo, "README.md", revision)
    listed = card.read_text(encoding="utf-8") if card is not None else ""
    return all(f"- `{name}`" in listed for name in names)


def verified_gguf_files(gguf_dir: Path) -> dict[str, Path]:
    """The GGUF files `export gguf` verified (its manifest says so and the bytes still match),
    with its Modelfile when that names one of them.

    Anything else in the folder (an interrupted export's temp file, a GGUF that failed or
    skipped verification, a file copied in by hand) is not a release file.
    """
    try:
        manifest = read_manifest(gguf_dir) if gguf_dir.is_dir() else None
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{gguf_dir / MANIFEST}: unreadable (cut mid-write?): export again") from e
    if not isinstance(manifest, dict) or manifest.get("kind") != "gguf":
        raise UserError(f"{gguf_dir}: no GGUF export manifest: export with `qmd-ft export gguf`")
    out: dict[str, Path] = {}
    entries = manifest.get("files")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        path = gguf_dir / str(entry.get("file", ""))
        if entry.get("verified") is not True or path.parent != gguf_dir or not path.is_file():
            continue
        if path.stat().st_size != entry.get("bytes") or file_sha256(path) != entry.get("sha256"):
            raise UserError(f"{path}: differs from the export's manifest: export again")
        out[path.name] = path
    if not out:
        raise UserError(
            f"{gguf_dir}: no verified .gguf file in its manifest (exported with --no-verify, "
            "or verification failed): export again with verification"
        )
    named = manifest.get("modelfile")
    named = named if isinstance(named, dict) else {}
    modelfile = gguf_dir / str(named.get("file", ""))
    if named.get("from") in out and modelfile.parent == gguf_dir and modelfile.is_file():
        out[modelfile.name] = modelfile
    return out


def execute(plan: ReleasePlan, registry: Registry) -> list[str]:
    """Upload a passed plan; refuses a failed one (the gate is not advisory).

    The main repo first, then the twin: when the twin's commit fails, the same command run
    again finds the candidate deployed and publishes the twin alone. Returns the commits made
    (a repo's revision stands in for its commit when it already held this release).
    """
    if not plan.passed:
        raise UserError("gate failed: " + "; ".join(plan.verdict.reasons))
    if plan.deployed:
        commits = [plan.parent or ""]
    else:
        commits = [registry.upload(plan.repo, plan.files, plan.message, plan.parent)]
    if plan.gguf_repo and plan.gguf_deployed:
        commits.append(plan.gguf_parent or "")
    elif plan.gguf_repo:
        message = plan.message + " (GGUF)"
        commits.append(registry.upload(plan.gguf_repo, plan.gguf_files, message, plan.gguf_parent))
    return commits
