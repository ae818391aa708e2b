"""The model card: HF metadata, the eval table, the prompt format, training and provenance.

A release is judged by its card, so the card carries the very numbers the gate used and where
they came from. Nothing secret goes in: only results, configs and manifests, checked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

from qmd_ft import prompt

if TYPE_CHECKING:
    from qmd_ft.gate import Verdict


def _metadata(base_model: str, gguf: bool) -> str:
    meta = {
        "base_model": base_model,
        "library_name": "gguf" if gguf else "transformers",
        "license": "apache-2.0",
        "pipeline_tag": "text-generation",
        "tags": ["qmd", "query-expansion", "qwen3", "search", *(["gguf"] if gguf else [])],
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _eval_table(results: dict[str, Any]) -> list[str]:
    s = results["summary"]
    lines = [
        "| metric | value |",
        "| --- | --- |",
        f"| queries | {s['n']} |",
        f"| mean reward (0-1) | {s['mean_reward']:.4f} |",
        f"| mean score (%) | {s['mean_percentage']:.1f} |",
        *(f"| {k} | {v} |" for k, v in s["ratings"].items()),
    ]
    lines += ["", "| category | mean reward |", "| --- | --- |"]
    lines += [f"| {c} | {v:.4f} |" for c, v in s["categories"].items()]
    return lines


def _retrieval_table(retrieval: dict[str, Any]) -> list[str]:
    """Search quality on `evals/retrieval/`: raw query, this model's expansions, gold."""
    corpus = retrieval.get("corpus", {})
    metrics = list(retrieval["systems"]["raw"]["mean"])
    lines = [
        f"## Search quality ({corpus.get('notes')} notes, {corpus.get('queries')} queries)",
        "",
        "The expansions searched QMD's way (BM25 + vectors, RRF); `raw` is the query alone.",
        "",
        "| system | " + " | ".join(metrics) + " |",
        "| --- |" + " --- |" * len(metrics),
    ]
    for name, summary in retrieval["systems"].items():
        lines.append(
            f"| {name} | " + " | ".join(f"{summary['mean'][m]:.3f}" for m in metrics) + " |"
        )
    return [*lines, ""]


def _gate_table(verdict: Verdict) -> list[str]:
    """Every rule of the release gate with its numbers: the very ones the decision used."""
    lines = [
        f"## Release gate: {'PASS' if verdict.passed else 'REFUSED'}",
        "",
        f"Baseline: {verdict.baseline_source}.",
        "",
        "| rule | metric | requirement | candidate | baseline | delta (CI) | result |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for rule in verdict.rules:
        rows = [(rule.metric, rule.numbers, rule.requirement, rule.status, rule.reason)]
        rows += [(m, n, "reported", "-", "") for m, n in rule.reported.items()]
        for metric, n, requirement, status, reason in rows:
            if n is None:
                cells = ["-", "-", "-"]
            else:
                cells = [
                    f"{n.candidate:.4g}",
                    f"{n.baseline:.4g}",
                    f"{n.mean_delta:+.4g} ({n.ci_low:+.4g} .. {n.ci_high:+.4g})",
                ]
            result = status + (f": {reason}" if reason and status != "fail" else "")
            lines.append(
                f"| {rule.name} | {metric} | {requirement} | "
                + " | ".join(cells)
                + f" | {result} |"
            )
    return [*lines, ""]


def render_card(
    repo: str,
    results: dict[str, Any],
    *,
    base_model: str,
    training: dict[str, Any] | list[dict[str, Any]] | None = None,
    verdict: Verdict | None = None,
    retrieval: dict[str, Any] | None = None,
    gguf_files: list[str] | None = None,
) -> str:
    """README.md for a release (model repo, or its -gguf twin when `gguf_files` is given)."""
    prov = results.get("provenance", {})
    example = prompt.render_prompt("docker compose networking")
    parts = [
        _metadata(base_model, gguf=gguf_files is not None),
        f"# {repo.split('/')[-1]}",
        "",
        "Query expansion for [QMD](https://github.com/tobi/qmd)'s hybrid search: turns a raw query"
        " into `hyde:` (a hypothetical answer passage), `lex:` (BM25 keywords) and `vec:`"
        " (natural-language rewrites) lines. Trained with [qmd-ft](https://github.com/tobi/qmd).",
        "",
        "## Prompt format",
        "",
        "```",
        example.rstrip("\n"),
        "```",
        "",
        "Append ` /only:lex`, ` /only:vec` or ` /only:hyde` to the query for one type only."
        " The answer carries no think block; generation stops at `<|im_end|>`.",
        "",
        f"## Evaluation (rubric {results['rubric_version']})",
        "",
        *_eval_table(results),
        "",
    ]
    if retrieval is not None:
        parts += _retrieval_table(retrieval)
    if verdict is not None:
        parts += _gate_table(verdict)
    if gguf_files is not None:
        parts += ["## Files", "", *(f"- `{f}`" for f in gguf_files), ""]
    if training:
        parts += [
            "## Training",
            "",
            "```yaml",
            yaml.safe_dump(training, sort_keys=False).rstrip(),
            "```",
            "",
        ]
    parts += [
        "## Provenance",
        "",
        f"- model sha256: `{prov.get('model_sha256')}`",
        f"- eval queries: `{prov.get('queries_file')}` (sha256 `{prov.get('queries_sha256')}`)",
        f"- generation: `{prov.get('generation')}`",
        f"- backend: {prov.get('backend')}, evaluated {prov.get('timestamp')}",
        f"- versions: `{prov.get('versions')}`",
        "",
        "The full per-query results are in `eval_results.json` beside the weights.",
        "",
    ]
    return "\n".join(parts)


def commit_message(results: dict[str, Any], verdict: Verdict | None) -> str:
    """One line a `git log` reader can judge the release by."""
    s = results["summary"]
    msg = (
        f"qmd-ft release: mean reward {s['mean_reward']:.4f} ({s['mean_percentage']:.1f}%) "
        f"on {s['n']} queries, rubric {results['rubric_version']}"
    )
    rubric = verdict.rule("rubric_vs_deployed") if verdict else None
    if rubric and rubric.numbers:
        msg += f"; {rubric.numbers.mean_delta:+.2f} points vs deployed"
    if verdict:
        for rule in verdict.rules:
            if rule.name.startswith("retrieval") and rule.numbers:
                msg += f"; {rule.metric} {rule.numbers.mean_delta:+.3f} {rule.name[10:]}"
    return msg
