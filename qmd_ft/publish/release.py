"""The gated release: never without an eval, never a worse model, one destination repo.

Flow: check the eval belongs to this model → fetch the deployed model's eval (or evaluate the
deployed model with the same harness) → gate → card + results + weights in one commit whose
message carries the eval summary → GGUF files, when given, to the `-gguf` twin.

Each commit replaces its repo's whole content and is pinned to the revision the gate read. When
the deployed model already is the candidate (a release whose `-gguf` commit failed after the
main one landed), the main repo is left as it is and only the twin is (re)published.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qmd_ft.config import EvalConfig, ModelConfig
from qmd_ft.errors import UserError
from qmd_ft.evaluation import load_results, model_hash, run_eval, write_results
from qmd_ft.gate import GateResult, GateRule, compare, retrieval_reasons
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

EvaluateDeployed = Callable[[Path, dict[str, Any]], dict[str, Any]]
"""(deployed model dir, candidate results) → results of the deployed model, same harness."""


@dataclass
class ReleasePlan:
    """What a release would upload, and why it may or may not go ahead."""

    repo: str
    files: dict[str, Path]
    message: str
    card: str
    gate: GateResult | None
    baseline_source: str
    gguf_repo: str | None = None
    gguf_files: dict[str, Path] = field(default_factory=dict)
    gguf_card: str | None = None
    parent: str | None = UNPINNED
    """The repo's revision the gate read: the release commit must land right on it."""
    gguf_parent: str | None = UNPINNED
    deployed: bool = False
    """The repo already serves this very model: only the `-gguf` twin is left to publish."""

    @property
    def passed(self) -> bool:
        return self.deployed or self.gate is None or self.gate.passed


def harness_evaluator(
    backend: str,
    gen: EvalConfig,
    device: str | None = None,
    on_progress: ProgressFn | None = None,
) -> EvaluateDeployed:
    """Evaluate the deployed model exactly as the candidate was: same queries and settings."""

    def evaluate(path: Path, candidate: dict[str, Any]) -> dict[str, Any]:
        prov = candidate["provenance"]
        qfile = Path(prov["queries_file"])
        if not qfile.is_file():
            raise UserError(
                f"{qfile}: the candidate's queries file is needed to eval the deployed model"
            )
        settings = gen.model_copy(update=prov["generation"])
        total = candidate["summary"]["n"]
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
    candidate: dict[str, Any],
    evaluate_deployed: EvaluateDeployed,
    revision: str | None = None,
) -> tuple[dict[str, Any] | None, str]:
    """The deployed model's eval (at `revision`, default the latest): its published results
    file, else a fresh eval, else none."""
    path = registry.fetch_file(repo, EVAL_FILE, revision)
    if path is not None:
        return load_results(path), f"{registry.name}:{repo}/{EVAL_FILE}"
    if registry.exists(repo, revision):
        deployed = registry.download(repo, revision)
        return evaluate_deployed(deployed, candidate), "evaluated deployed model"
    return None, "nothing deployed yet"


def _retrieval_check(
    path: Path | None,
    model: Path,
    registry: Registry,
    repo: str,
    gate: GateResult | None,
    revision: str | None = None,
) -> dict[str, Any] | None:
    """The second gate metric: no retrieval regression against the deployed model's file."""
    if path is None:
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    if doc.get("provenance", {}).get("model_sha256") != model_hash(str(model)):
        raise UserError(f"{path} was not produced from {model} (model hash differs)")
    deployed = registry.fetch_file(repo, RETRIEVAL_FILE, revision)
    if deployed is not None and gate is not None:
        reasons = retrieval_reasons(doc, json.loads(deployed.read_text(encoding="utf-8")))
        gate.reasons += reasons
        gate.passed = gate.passed and not reasons
    return doc


def plan_release(
    model: Path,
    results_path: Path,
    registry: Registry,
    repo: str,
    rule: GateRule,
    evaluate_deployed: EvaluateDeployed,
    *,
    gguf_dir: Path | None = None,
    gguf_repo: str | None = None,
    force_name: bool = False,
    retrieval: Path | None = None,
) -> ReleasePlan:
    """Everything up to (not including) the upload; raises UserError on a bad input."""
    check_repo_name(repo, force=force_name)
    if not (model / "config.json").is_file():
        raise UserError(f"{model}: not a merged model directory (no config.json)")
    results = load_results(results_path)
    evaluated = results.get("provenance", {}).get("model_sha256")
    if evaluated != model_hash(str(model)):
        raise UserError(
            f"{results_path} was not produced from {model} (model hash differs): "
            "evaluate this model before publishing it"
        )
    parent = registry.head(repo)
    baseline, source = baseline_results(registry, repo, results, evaluate_deployed, parent)
    deployed = baseline is not None and _model_of(baseline) == evaluated
    gate = compare(results, baseline, rule) if baseline is not None and not deployed else None
    retrieval_doc = _retrieval_check(retrieval, model, registry, repo, gate, parent)
    manifest = read_manifest(model) or {}
    # A merged model's manifest lists its training stages; a trained directory has its config.
    training = manifest.get("stages") or (manifest.get("config") or {}).get("training")
    base_model = origin_model(str(model)) if manifest else ModelConfig().base
    gate_dict = gate.to_dict() if gate else None
    card = render_card(repo, results, base_model=base_model, training=training, gate=gate_dict)
    message = commit_message(results, gate_dict)
    staging = Path(tempfile.mkdtemp(prefix="qmd-ft-release-"))
    (staging / "README.md").write_text(card, encoding="utf-8")
    write_results(results, staging / EVAL_FILE)
    files = model_files(model)
    files.pop(MANIFEST, None)
    files |= {"README.md": staging / "README.md", EVAL_FILE: staging / EVAL_FILE}
    if retrieval_doc is not None:
        write_results(retrieval_doc, staging / RETRIEVAL_FILE)
        files[RETRIEVAL_FILE] = staging / RETRIEVAL_FILE
    if (model / MANIFEST).is_file():
        files["qmd_ft_manifest.json"] = model / MANIFEST
    plan = ReleasePlan(repo, files, message, card, gate, source, parent=parent, deployed=deployed)
    if deployed:
        plan.baseline_source = f"{source}: the deployed model is this candidate"
    if gguf_dir is not None:
        verified = verified_gguf_files(gguf_dir)
        plan.gguf_repo = gguf_repo or f"{repo}-gguf"
        check_repo_name(plan.gguf_repo, force=True)
        plan.gguf_parent = registry.head(plan.gguf_repo)
        names = sorted(n for n in verified if n.endswith(".gguf"))
        plan.gguf_card = render_card(
            plan.gguf_repo, results, base_model=repo, gate=gate_dict, gguf_files=names
        )
        (staging / "README.gguf.md").write_text(plan.gguf_card, encoding="utf-8")
        plan.gguf_files = verified | {
            "README.md": staging / "README.gguf.md",
            EVAL_FILE: staging / EVAL_FILE,
        }
    _assert_no_secret([card, message, plan.gguf_card or ""])
    return plan


def _model_of(results: dict[str, Any]) -> str | None:
    return results.get("provenance", {}).get("model_sha256")


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
    (the main repo's revision stands in for its commit when it was already deployed).
    """
    if not plan.passed:
        raise UserError("gate failed: " + "; ".join(plan.gate.reasons if plan.gate else []))
    if plan.deployed:
        commits = [plan.parent or ""]
    else:
        commits = [registry.upload(plan.repo, plan.files, plan.message, plan.parent)]
    if plan.gguf_repo:
        message = plan.message + " (GGUF)"
        commits.append(registry.upload(plan.gguf_repo, plan.gguf_files, message, plan.gguf_parent))
    return commits
