"""QMD's `x only: lex` rows: refused with the likely meaning, migrated by one command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qmd_ft.data.migrate import migrate_only
from qmd_ft.data.validate import read_all

QMD_ONLY = (
    Path(__file__).resolve().parents[2] / "shared/qmd-data/qmd_expansion_handcrafted_only.jsonl"
)


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


ROWS = [
    {"input": "ssh keys only: lex", "output": "lex: ssh key auth\nlex: ssh-keygen"},
    {"input": "ssh keys only:vec", "output": "vec: how to set up ssh key login"},
    {"input": "ssh keys", "output": "lex: ssh keys\nvec: how to use ssh keys"},
]


def qmd_ft(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qmd_ft", *args], capture_output=True, text=True)


def test_validate_names_the_likely_meaning(tmp_path: Path) -> None:
    src = _write(tmp_path / "only.jsonl", ROWS)
    errors = [str(p) for p in read_all([src]).errors]
    assert len(errors) == 2
    assert errors[0].startswith(f"{src}:1: ") and "'ssh keys /only:lex'" in errors[0]
    assert "qmd-ft data migrate-only" in errors[0]
    assert f"{src}:2: " in errors[1] and "'ssh keys /only:vec'" in errors[1]


def test_migration_rewrites_only_those_rows(tmp_path: Path) -> None:
    result = migrate_only([_write(tmp_path / "only.jsonl", ROWS)])
    assert result.rewritten == 2 and not result.problems
    assert [e.query for e in result.examples] == [
        "ssh keys /only:lex",
        "ssh keys /only:vec",
        "ssh keys",
    ]
    assert [e.only_mode for e in result.examples] == ["lex", "vec", None]


def test_migrate_command_writes_a_new_valid_file_and_never_in_place(tmp_path: Path) -> None:
    src = _write(tmp_path / "only.jsonl", ROWS)
    before = src.read_bytes()
    out = tmp_path / "migrated.jsonl"
    r = qmd_ft("data", "migrate-only", str(src), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "2 of 3 row(s)" in r.stdout
    assert qmd_ft("data", "validate", str(out)).returncode == 0
    again = qmd_ft("data", "migrate-only", str(src), "-o", str(src))
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr
    assert src.read_bytes() == before


def test_a_row_still_invalid_after_migration_writes_nothing(tmp_path: Path) -> None:
    bad = [*ROWS, {"input": "ssh keys only: lex", "output": "vec: wrong type for lex"}]
    out = tmp_path / "migrated.jsonl"
    r = qmd_ft("data", "migrate-only", str(_write(tmp_path / "only.jsonl", bad)), "-o", str(out))
    assert r.returncode == 1 and ":4: /only:lex query has no lex: line" in r.stdout
    assert not out.exists()


@pytest.mark.skipif(not QMD_ONLY.is_file(), reason="../shared/qmd-data is not beside the repo")
def test_qmds_handcrafted_file_migrates_whole() -> None:
    assert len(read_all([QMD_ONLY]).errors) == 336
    result = migrate_only([QMD_ONLY])
    assert result.rewritten == 336 and not result.problems
    assert all(e.only_mode in ("lex", "vec", "hyde") for e in result.examples)
