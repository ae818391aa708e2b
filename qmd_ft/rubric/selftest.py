"""Worked examples of the rubric, scored live for `qmd-ft score --selftest`.

Each example shows one rule at work (a think block, leakage, dropped entities, a generic
line), so a reader sees what the rubric rewards and punishes without reading the spec.
"""

from __future__ import annotations

from qmd_ft.rubric.scoring import ScoreResult, score

SELFTEST_EXAMPLES: list[tuple[str, str, str]] = [
    (
        "auth config",
        "hyde: Authentication is configured by setting the AUTH_SECRET environment variable "
        "and enabling the auth middleware in the config file.\n"
        "lex: auth config file settings\n"
        "lex: authentication middleware config secret\n"
        "vec: how do I configure authentication for my application\n"
        "vec: which settings control the auth middleware and its secrets",
        "excellent full expansion",
    ),
    (
        "docker compose volumes /only:lex",
        "lex: docker compose named volumes\nlex: compose bind mount volumes yaml",
        "only:lex expansion",
    ),
    (
        "rust lifetimes",
        "<think>\nThe user wants Rust lifetime docs.\n</think>\n"
        "lex: rust lifetimes borrow checker\n"
        "vec: how do lifetime annotations work in rust functions",
        "think block: loses the 20-point think bonus",
    ),
    (
        "python asyncio",
        "lex: python asyncio event loop\n<|im_start|>assistant\nvec: asyncio tutorial",
        "chat template leakage: failure",
    ),
    (
        "configure AWS Lambda",
        "lex: configure serverless function settings\n"
        "lex: configure function timeout memory\n"
        "vec: how do I configure memory and timeout for a serverless function",
        "drops the entities AWS and Lambda: -30",
    ),
    (
        "deploy Kubernetes ingress",
        "lex: kubernetes ingress controller\n"
        "lex: find information about\n"
        "vec: how does a kubernetes ingress route traffic to services",
        "generic lex line: -15",
    ),
]


def selftest_rows() -> list[tuple[str, str, ScoreResult]]:
    """(query, note, result) for each worked example, for `qmd-ft score --selftest`."""
    return [(q, note, score(q, completion)) for q, completion, note in SELFTEST_EXAMPLES]
