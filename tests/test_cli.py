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


GOOD = json.dumps({"input": "q", "output": "lex: a b\nvec: c d e f"}) + "\n"


def one_line_error(r: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    for part in parts:
        assert part in r.stderr, r.stderr


def test_output_paths_of_the_wrong_kind_are_refused_up_front(tmp_path: Path) -> None:
    data = tmp_path / "g.jsonl"
    data.write_text(GOOD)
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    a_dir = tmp_path / "a_dir"
    a_dir.mkdir()
    is_file = f"{a_file}: exists and is not a directory"
    is_dir = f"{a_dir}: is a directory"
    evals = tmp_path / "q.txt"
    evals.write_text("other query\n")
    prep = ("data", "prepare", "--data", str(data), "--evals", str(evals), "--out", str(a_file))
    one_line_error(run(*prep), is_file)
    one_line_error(run("make-tiny-model", str(a_file)), is_file)
    one_line_error(run("export", "gguf", "--model", str(a_dir), "--out", str(a_file)), is_file)
    # /nonexistent models: the output is checked before any model is looked at
    merge = ("merge", "--base", "/nonexistent", "--adapter", "/nonexistent", "-o", str(a_file))
    one_line_error(run(*merge), is_file)
    one_line_error(run("eval", "--model", "/nonexistent", "-o", str(a_dir)), is_dir)
    one_line_error(run("data", "variants", str(data), "-o", str(a_dir)), is_dir)
    one_line_error(run("data", "clean", str(data), "--fix", "-o", str(a_dir)), is_dir)
    one_line_error(run("data", "import-hf", str(data), "-o", str(a_dir)), is_dir)
    one_line_error(run("data", "generate", "--count", "1", "-o", str(a_dir)), is_dir)
    under_a_file = a_file / "x.jsonl"
    one_line_error(run("data", "variants", str(data), "-o", str(under_a_file)), "is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_dir", "a_file", "g.jsonl", "q.txt"]
    assert not any(a_dir.iterdir())


def test_uncaught_os_error_with_a_path_is_one_line(tmp_path: Path) -> None:
    from qmd_ft.cli import error_line

    assert error_line(IsADirectoryError(21, "Is a directory", "x/y")) == "x/y: Is a directory"
    assert error_line(OSError("no file named")) is None
    assert error_line(ValueError("a bug")) is None
    # an output file that is a directory inside the output dir: no check foresees it
    data = tmp_path / "g.jsonl"
    data.write_text(GOOD)
    out = tmp_path / "out"
    (out / "train.jsonl").mkdir(parents=True)
    r = run("data", "prepare", "--data", str(data), "--no-evals", "--out", str(out))
    one_line_error(r, f"error: {out / 'train.jsonl'}: Is a directory")
    r = run("--debug", "data", "prepare", "--data", str(data), "--no-evals", "--out", str(out))
    assert r.returncode == 1 and "Traceback" in r.stderr


def test_validate_refuses_empty_inputs(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    r = run("data", "validate", str(empty))
    assert r.returncode == 1 and f"{empty}: no rows" in r.stdout
    no_jsonl = tmp_path / "d"
    no_jsonl.mkdir()
    one_line_error(run("data", "validate", str(no_jsonl)), f"no .jsonl files in {no_jsonl}")


def test_prepare_missing_evals_is_an_error_and_no_evals_opts_out(tmp_path: Path) -> None:
    data = tmp_path / "g.jsonl"
    data.write_text(GOOD)
    out = tmp_path / "out"
    r = run("data", "prepare", "--data", str(data), "--evals", "/nope", "--out", str(out))
    one_line_error(r, "--evals /nope: not found", "--no-evals")
    assert not out.exists()
    r = run("data", "prepare", "--data", str(data), "--no-evals", "--out", str(out))
    assert r.returncode == 0 and "train 1" in r.stdout, r.stderr


def test_prepare_with_no_train_rows_is_an_error(tmp_path: Path) -> None:
    data = tmp_path / "g.jsonl"
    data.write_text(GOOD)
    evals = tmp_path / "q.txt"
    evals.write_text("q\n")
    out = tmp_path / "out"
    r = run("data", "prepare", "--data", str(data), "--evals", str(evals), "--out", str(out))
    one_line_error(r, "no rows to train on", "are eval queries")
    assert not out.exists()


def test_score_refuses_bad_or_empty_input_with_file_and_line(tmp_path: Path) -> None:
    ok = json.dumps({"query": "q", "completion": "lex: a b"})
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    one_line_error(run("score", str(empty)), f"{empty}: no completions to score")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(ok.encode() + b'\n{"query": "\xff"}\n')
    one_line_error(run("score", str(bad)), f"{bad}:2: not valid UTF-8")
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"query": "q"}) + "\n")
    one_line_error(run("score", str(missing)), f"{missing}:1: missing key 'completion'")
    deep = tmp_path / "deep.jsonl"
    deep.write_text(ok + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    one_line_error(run("score", str(deep)), f"{deep}:2: JSON nested too deeply")
    # U+2028 inside a JSON string is one line, not two
    sep = tmp_path / "sep.jsonl"
    sep.write_text(json.dumps({"query": "a\u2028b", "completion": "lex: a b"}, ensure_ascii=False))
    assert run("score", str(sep), "--json").returncode == 0


def test_score_refuses_file_with_results(tmp_path: Path) -> None:
    p = tmp_path / "c.jsonl"
    p.write_text(json.dumps({"query": "q", "completion": "lex: a b"}) + "\n")
    r = run("score", str(p), "--results", str(tmp_path / "results.json"))
    assert r.returncode == 2 and "FILE and --results given: choose one" in r.stderr


def test_deeply_nested_line_is_reported_by_validate_and_stats(tmp_path: Path) -> None:
    deep = tmp_path / "deep.jsonl"
    deep.write_text(GOOD + "[" * 100_000 + "]" * 100_000 + "\n")
    r = run("data", "validate", str(deep))
    assert r.returncode == 1 and f"{deep}:2: JSON nested too deeply" in r.stdout, r.stderr
    r = run("data", "stats", str(deep))
    assert f"{deep}:2: JSON nested too deeply" in r.stdout
    one_line_error(r, "1 invalid line(s)")
