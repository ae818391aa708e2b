"""The CLI contract: exit codes, one-line errors (no traceback), --json purity."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qmd_ft", *args], cwd=cwd, capture_output=True, text=True
    )


def test_help_lists_the_whole_contract() -> None:
    out = run("--help").stdout
    # The names in the Commands panel's first column: "config", "data", "train", "merge",
    # "score", "eval" and "publish" also occur in descriptions, so a plain `in out` would
    # pass without them.
    panel = out.split("Commands", 1)[1]
    listed = set(re.findall(r"^(?:[│|] | {2})([a-z][a-z-]*) ", panel, re.MULTILINE))
    assert listed >= {
        "doctor",
        "config",
        "make-tiny-model",
        "data",
        "score",
        "train",
        "merge",
        "eval",
        "compare",
        "export",
        "publish",
        "pipeline",
        "demo",
        "bench",
        "jobs",
    }, out


def test_user_error_is_one_line_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  batch_sise: 4\n")
    r = run("config", "check", str(bad))
    assert r.returncode == 1
    assert r.stderr.strip() == f"error: {bad}: training.batch_sise: unknown key"
    assert "Traceback" not in r.stderr + r.stdout


def test_debug_shows_traceback(tmp_path: Path) -> None:
    r = run("--debug", "config", "check", str(tmp_path / "missing.yaml"))
    assert r.returncode == 1 and "Traceback" in r.stderr


def test_bad_usage_exit_2() -> None:
    assert run("data", "prepare", "--val-fraction", "nope").returncode == 2


def test_config_show_applies_overrides() -> None:
    r = run("config", "show", "configs/sft.yaml", "--set", "training.epochs=2")
    assert r.returncode == 0
    assert "epochs: 2" in r.stdout and "base: Qwen/Qwen3-1.7B" in r.stdout


def test_validate_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "g.jsonl"
    good.write_text(json.dumps({"input": "q", "output": "lex: a b\nvec: c d e f"}) + "\n")
    assert run("data", "validate", str(good)).returncode == 0
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"input": "q"}\n')
    r = run("data", "validate", str(bad))
    assert r.returncode == 1 and f"{bad}:1: missing key 'output'" in r.stdout
    r = run("data", "validate", str(tmp_path / "none*.jsonl"))
    assert r.returncode == 1 and "no files match" in r.stderr


def test_stats_json_is_pure(tmp_path: Path) -> None:
    p = tmp_path / "g.jsonl"
    p.write_text(json.dumps({"input": "q", "output": "lex: a b\nvec: c d e f"}) + "\n")
    r = run("data", "stats", str(p), "--json")
    assert json.loads(r.stdout)["rows"] == 1


def test_variants_refuses_in_place(tmp_path: Path) -> None:
    p = tmp_path / "g.jsonl"
    p.write_text(json.dumps({"input": "q", "output": "lex: a b\nvec: c d e f"}) + "\n")
    r = run("data", "variants", str(p), "-o", str(p))
    assert r.returncode == 1 and "refusing to overwrite" in r.stderr
    out = tmp_path / "v.jsonl"
    assert run("data", "variants", str(p), "-o", str(out)).returncode == 0
    assert [json.loads(x)["input"] for x in out.read_text().splitlines()] == [
        "q /only:lex",
        "q /only:vec",
    ]


def test_score_json_keys_and_order(tmp_path: Path) -> None:
    p = tmp_path / "c.jsonl"
    rows = [
        {
            "query": "docker volumes",
            "completion": "lex: docker volume mount\nvec: how do docker volumes persist data",
        },
        {"query": "x", "completion": "<|im_start|>bad"},
    ]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = run("score", str(p), "--json")
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [set(x) for x in lines] == [
        {
            "format",
            "diversity",
            "hyde",
            "quality",
            "entity",
            "think_bonus",
            "total",
            "max_possible",
            "percentage",
            "rating",
            "reward",
        }
    ] * 2
    assert lines[1]["rating"] == "Failed" and lines[0]["total"] > 0


def test_doctor_reports_every_piece() -> None:
    r = run("doctor", "--json")
    assert r.returncode == 0
    checks = {c["what"]: c for c in json.loads(r.stdout)}
    assert {
        "python",
        "CUDA (cuda backend)",
        "MLX (mlx backend)",
        "llama.cpp (GGUF)",
        "HF login",
    } <= set(checks)
    assert all(c["ok"] or c["fix"] for c in checks.values())


def test_debug_after_the_subcommand_shows_traceback(tmp_path: Path) -> None:
    r = run("config", "check", str(tmp_path / "missing.yaml"), "--debug")
    assert r.returncode == 1 and "Traceback" in r.stderr and "No such option" not in r.stderr


def test_hoist_debug_keeps_everything_after_a_double_dash() -> None:
    from qmd_ft.cli import hoist_debug

    assert hoist_debug(["q", "a", "--debug", "b"]) == ["q", "--debug", "a", "b"]
    assert hoist_debug(["q", "a", "--", "--debug"]) == ["q", "a", "--", "--debug"]
    assert hoist_debug(["q", "a"]) == ["q", "a"]
