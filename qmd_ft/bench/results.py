"""The arithmetic of bench results (steady rates after the warmup, speedups against upstream)
and the plain-text report. Shared by the core and the backends' benches, so it imports neither."""

from __future__ import annotations

import statistics
from typing import Any

VERSIONED = ("mlx", "mlx_lm", "torch", "transformers", "trl")
"""Packages whose versions a result's setup may record, in the report's order."""

METRICS = (
    # (result key, label, higher is better)
    ("sft_real_tokens_per_s", "SFT real (non-pad) tokens/s", True),
    ("grpo_step_s", "GRPO s per optimizer step", False),
    ("gen_tokens_per_s", "generation tokens/s", True),
)


def steady(values: list[float], warmup: int) -> list[float]:
    """The values after the first `warmup` (all of them when nothing would be left)."""
    return values[warmup:] if len(values) > warmup else values


def sft_result(times: list[float], tokens: list[float], warmup: int) -> dict[str, Any]:
    """Steady real tokens/s of one SFT run from its step times and real tokens per step."""
    times = times[: len(tokens)]
    rate = sum(steady(tokens, warmup)) / sum(steady(times, warmup))
    return {
        "sft_real_tokens_per_s": round(rate, 1),
        "sft_step_s": [round(t, 3) for t in times],
        "sft_tokens_per_step": [int(t) for t in tokens],
    }


def grpo_result(
    times: list[float], log_history: list[dict[str, Any]], warmup: int
) -> dict[str, Any]:
    """Steady seconds per optimizer step of one GRPO run, and its completion lengths."""
    lengths = [e["completions/mean_length"] for e in log_history if "completions/mean_length" in e]
    return {
        "grpo_step_s": round(statistics.median(steady(times, warmup)), 3),
        "grpo_step_s_all": [round(t, 3) for t in times],
        "grpo_mean_completion_len": round(statistics.fmean(lengths), 1) if lengths else None,
    }


def gen_result(made: int, timings: list[float]) -> dict[str, Any]:
    """Generation tokens/s of the second of two equal calls; the first (warmup) apart."""
    return {
        "gen_tokens_per_s": round(made / timings[1], 1),
        "gen_first_call_s": round(timings[0], 2),
    }


def ratios(ours: dict[str, Any], upstream: dict[str, Any]) -> dict[str, float]:
    """How many times better ours is per metric (a speedup: > 1 is faster)."""
    out: dict[str, float] = {}
    for key, _, higher in METRICS:
        a, b = ours.get(key), upstream.get(key)
        if isinstance(a, int | float) and isinstance(b, int | float) and a > 0 and b > 0:
            out[key] = round(a / b if higher else b / a, 2)
    return out


def report(result: dict[str, Any]) -> str:
    """The result as a plain-text table (upstream and ratio columns when measured)."""
    upstream = result.get("upstream")
    head = ["metric", "ours"] + (["upstream recipe", "ratio"] if upstream else [])
    rows = [head]
    for key, label, _ in METRICS:
        if key not in result["ours"]:
            continue
        row = [label, _fmt(result["ours"][key])]
        if upstream:
            row += [_fmt(upstream.get(key)), f"{result['ratios'].get(key, float('nan')):.2f}x"]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    info = result["setup"]
    versions = ", ".join(f"{name} {info[name]}" for name in VERSIONED if name in info)
    lines.append("")
    lines.append(
        f"{info.get('backend', 'cuda')} on {info['device']} | shape {info['shape']} "
        f"({info['params']:,} params) | {versions}"
    )
    lines.append("ours: " + ", ".join(f"{k}={v}" for k, v in result["ours_speed"].items()))
    if info.get("upstream_device"):
        lines.append(f"upstream recipe on {info['upstream_device']}")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    """Numbers for the table: thousands separated above 100, three significant digits below."""
    if not isinstance(value, int | float):
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
