"""`data clean`: misread technical terms found with FILE:LINE, fixed into a new file, never lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qmd_ft.data.clean import clean
from qmd_ft.data.reader import resolve_paths
from qmd_ft.data.schema import parse_record
from qmd_ft.data.term_senses import load_senses, misreadings
from qmd_ft.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SENSES = load_senses()


def found(query: str, output: str) -> list[str]:
    return [str(m) for m in misreadings(parse_record({"input": query, "output": output}), SENSES)]


def write(path: Path, records: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("query", "wrong_line", "term", "sense"),
    [
        ("ruby gem install", "gemstone jewelry care", "gem", "gemstone"),
        ("yarn install workspace", "yarn wool knitting patterns", "yarn", "wool"),
        ("shopify liquid template", "liquid water boiling point", "liquid", "water/fluid"),
        ("React hooks tutorial", "fishing hooks and bait", "hook", "fishing"),
        ("docker container restart", "shipping container freight", "container", "shipping"),
        ("git branch delete", "tree branch twig pruning", "branch", "tree"),
        ("linux kernel panic", "popcorn kernel corn", "kernel", "seed/grain"),
        ("browser cookie samesite", "chocolate chip cookie recipe", "cookie", "biscuit"),
    ],
)
def test_the_classic_misreadings_are_found(
    query: str, wrong_line: str, term: str, sense: str
) -> None:
    output = f"lex: {query} docs\nlex: {wrong_line}\nvec: how does {query} work in practice"
    [finding] = found(query, output)
    assert finding.startswith(f"term '{term}' read as {sense} in lex line 2 (")


def test_no_finding_without_technical_context_or_when_the_query_means_it() -> None:
    assert found("gem care", "lex: gemstone jewelry cleaning\nvec: how to clean gems") == []
    assert (
        found("yarn colors", "lex: wool yarn colors\nvec: which yarn colours suit knitting") == []
    )
    # the query itself names the everyday sense: it may well be what was asked
    assert found("ruby gem vs gemstone", "lex: gemstone jewelry\nvec: what a ruby gem is") == []
    # wrong words only count as whole words: "treemap" is not "tree", "firewall" not "fire"
    assert found("spark cluster firewall", "lex: spark firewall ports\nvec: open spark ports") == []


def test_one_finding_per_wrong_word_and_only_mode_uses_the_base_query() -> None:
    # both "ruby" and "gem" are terms; one wrong word still makes one finding
    assert len(found("ruby gem install", "lex: ruby gemstone\nvec: install a ruby gem")) == 1
    [finding] = found("yarn add lodash npm /only:hyde", "hyde: Wool yarn is spun from fleece.")
    assert "in hyde line 1 ('wool'; query has 'npm')" in finding


def test_packaged_table_is_loadable_and_covers_the_issue_terms() -> None:
    terms = {s.term for s in SENSES}
    assert len(SENSES) >= 20
    assert {"gem", "yarn", "liquid", "hook", "container", "branch", "pipe", "shell"} <= terms
    assert {"kernel", "thread", "cookie", "python", "rust", "spark"} <= terms


def test_terms_file_extends_the_table_and_bad_entries_name_themselves(tmp_path: Path) -> None:
    extra = tmp_path / "terms.yaml"
    extra.write_text(
        "terms:\n  - term: pod\n    sense: pea pod\n    wrong: [peas, legume]\n"
        "    context: [kubernetes, k8s]\n"
    )
    senses = load_senses(extra)
    assert len(senses) == len(SENSES) + 1
    example = parse_record({"input": "kubernetes pod logs", "output": "lex: peas\nvec: a b c"})
    assert [m.term for m in misreadings(example, senses)] == ["pod"]

    extra.write_text("terms:\n  - term: pod\n    sense: x\n    wrong: []\n    context: [k8s]\n")
    with pytest.raises(UserError, match=r"terms\[1\]: 'wrong' must be a non-empty list"):
        load_senses(extra)
    extra.write_text("terms:\n  - term: pod\n    sense: x\n    wrong: [a]\n    context: [pod]\n")
    with pytest.raises(UserError, match="must not hold the term itself"):
        load_senses(extra)
    with pytest.raises(UserError, match="cannot read terms file"):
        load_senses(tmp_path / "missing.yaml")


def test_every_row_is_kept_fixed_or_dropped_with_its_reason(tmp_path: Path) -> None:
    path = write(
        tmp_path / "a.jsonl",
        [
            {"input": "docker compose", "output": "lex: docker compose up\nvec: run compose apps"},
            {
                "input": "ruby gem install",
                "output": "hyde: A gem is a precious stone.\nlex: ruby gem install bundler\n"
                "lex: gemstone jewelry\nvec: how do I install a ruby gem with bundler",
            },
            {"input": "yarn install", "output": "lex: yarn wool\nvec: how to knit with wool yarn"},
            {"input": "q"},
        ],
    )
    result = clean([path], SENSES)
    gem = f"{path}:2: term 'gem' read as gemstone in"
    assert [str(p) for p in result.findings] == [
        f"{gem} hyde line 1 ('precious stone'; query has 'ruby')",
        f"{gem} lex line 2 ('gemstone'; query has 'ruby')",
        f"{path}:3: term 'yarn' read as wool in lex line 1 ('wool'; query has 'install')",
        f"{path}:3: term 'yarn' read as wool in vec line 1 ('knit'; query has 'install')",
        f"{path}:4: missing key 'output'",
    ]
    assert result.outcomes == {"kept": 1, "fixed": 1, "dropped": 2}
    assert [str(p) for p in result.dropped] == [
        f"{path}:3: dropped: misread term, nothing valid left (empty output)",
        f"{path}:4: dropped: invalid line (missing key 'output')",
    ]
    assert result.records[1] == {
        "input": "ruby gem install",
        "output": "lex: ruby gem install bundler\nvec: how do I install a ruby gem with bundler",
    }


def test_no_false_positives_on_the_projects_data(repo_root: Path) -> None:
    result = clean(resolve_paths([str(repo_root / "data" / "*.jsonl")]), SENSES)
    assert result.findings == [] and result.outcomes["dropped"] == 0


def test_no_false_positives_on_qmds_data(shared_dir: Path) -> None:
    result = clean(sorted((shared_dir / "qmd-data").glob("*.jsonl")), SENSES)
    assert [p for p in result.findings if "term '" in p.message] == []


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qmd_ft", "data", "clean", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_cli_reports_exits_1_and_fix_writes_a_new_file(tmp_path: Path) -> None:
    bad = write(
        tmp_path / "bad.jsonl",
        [
            {
                "input": "git branch delete",
                "output": "lex: git branch -d\nlex: oak twig\nvec: how to delete a git branch",
            }
        ],
    )
    r = run(str(bad))
    assert r.returncode == 1
    assert (
        f"{bad}:1: term 'branch' read as tree in lex line 2 ('twig'; query has 'git')" in r.stdout
    )
    assert "1 row(s) in 1 file(s), 1 finding(s): 0 kept, 1 fixed, 0 dropped" in r.stdout

    out = tmp_path / "clean.jsonl"
    r = run(str(bad), "--fix", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert f"→ 1 row(s) in {out}" in r.stdout
    assert (
        json.loads(out.read_text())["output"]
        == "lex: git branch -d\nvec: how to delete a git branch"
    )
    assert "oak twig" in bad.read_text()  # the input is untouched

    assert run(str(out)).returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fix"], "--fix needs -o OUT"),
        (["-o", "x.jsonl"], "-o is only written with --fix"),
        (["--fix", "-o", "SELF"], "refusing to overwrite an input file"),
    ],
)
def test_cli_refuses_unsafe_output(tmp_path: Path, args: list[str], message: str) -> None:
    path = write(tmp_path / "a.jsonl", [{"input": "q", "output": "lex: a b\nvec: c d e"}])
    r = run(str(path), *[str(path) if a == "SELF" else a for a in args])
    assert r.returncode == 1 and message in r.stderr
