"""Data toolkit: validation findings, hostile input, deterministic prepare, variants, stats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qmd_ft.data.normalize import normalize, truncate_hyde
from qmd_ft.data.prepare import DataErrors, prepare
from qmd_ft.data.reader import read_examples, resolve_paths
from qmd_ft.data.schema import SchemaError, parse_record
from qmd_ft.data.stats import compute_stats
from qmd_ft.data.validate import read_all, validate
from qmd_ft.data.variants import only_variants
from qmd_ft.errors import UserError

FULL = "hyde: A passage.\nlex: alpha beta\nvec: what is alpha beta about"


def write(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def messages(path: Path) -> list[str]:
    return [str(p) for p in validate([path]).problems]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"output": FULL}, "missing key 'input'"),
        ({"input": "q"}, "missing key 'output'"),
        ({"input": 3, "output": FULL}, "'input' must be a string, got number"),
        ({"input": "  ", "output": FULL}, "'input' is empty"),
        ({"input": "q", "output": ""}, "empty output"),
        ({"input": "q", "output": "lex: a\nbogus line"}, "output line 2: 'bogus line'"),
        ({"input": "q", "output": "lex: a b"}, "no vec: line"),
        ({"input": "q", "output": "hyde: x\nhyde: y\nlex: a\nvec: b c"}, "2 hyde: lines"),
        ({"input": "q /only:vec", "output": "lex: a b"}, "/only:vec query has no vec: line"),
        (
            {"input": "q /only:lex", "output": "lex: a b\nvec: c d e\nhyde: f"},
            "/only:lex query has hyde:, vec: line(s); answer with lex: only",
        ),
        ({"input": "q /only:vecs", "output": FULL}, "query ends in '/only:vecs'"),
        ({"input": "q /ONLY:", "output": FULL}, "query ends in '/ONLY:'"),
        ({"input": "q", "output": "lex:\nvec: a b"}, "empty lex: line"),
        ({"input": "q", "output": 5}, "must be a string or a list"),
        ([1, 2], "expected a JSON object, got array"),
    ],
)
def test_schema_reasons(record: object, reason: str) -> None:
    with pytest.raises(SchemaError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_record(record)


def test_only_mode_needs_only_its_type_and_structured_form_accepted() -> None:
    assert parse_record({"input": "x /only:LEX", "output": "lex: a b"}).only_mode == "lex"
    ex = parse_record({"query": "q", "output": [["lex", "a b"], ["vec", "c d e"]]})
    assert ex.of_type("vec") == ["c d e"]
    # "only: lex" without the slash is an ordinary query (it needs lex and vec): refused, with
    # the row's likely meaning
    with pytest.raises(SchemaError, match="ordinary query; it most likely means 'x /only:lex'"):
        parse_record({"input": "x only: lex", "output": "lex: a b"})


def test_validate_reports_file_line_for_each_problem(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_bytes(
        json.dumps({"input": "a", "output": FULL}).encode() + b"\n"
        b"{not json\n"
        b"\n" + json.dumps({"input": "A", "output": FULL}).encode() + b"\n"
        b'{"input": "\xff\xfe", "output": "x"}\n'
        b'{"input": "nul\x00", "output": "x"}\n'
    )
    msgs = messages(p)
    assert msgs[0].startswith(f"{p}:2: invalid JSON")
    assert f"{p}:5: not valid UTF-8" in msgs[1]
    assert msgs[2] == f"{p}:6: NUL byte at column 15"
    assert msgs[3] == f"{p}:4: duplicate query (first at {p}:1)"
    assert len(msgs) == 4


def test_bom_and_crlf_are_warnings_not_errors(tmp_path: Path) -> None:
    p = tmp_path / "w.jsonl"
    line = json.dumps({"input": "a", "output": FULL}).encode()
    p.write_bytes(b"\xef\xbb\xbf" + line + b"\r\n" + line.replace(b'"a"', b'"b"') + b"\r\n")
    result = validate([p])
    assert len(result.rows) == 2 and not result.errors
    assert [w.message for w in result.warnings] == [
        "CRLF line endings (accepted)",
        "UTF-8 byte-order mark (accepted)",
    ]


def test_deeply_nested_json_is_a_problem_with_its_line(tmp_path: Path) -> None:
    p = tmp_path / "deep.jsonl"
    p.write_text(json.dumps({"input": "a", "output": FULL}) + "\n" + "[" * 100_000 + "]" * 100_000)
    result = validate([p])
    assert len(result.rows) == 1
    assert [str(e) for e in result.errors] == [f"{p}:2: JSON nested too deeply"]


def test_empty_file_and_directory_without_jsonl_are_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    good = write(tmp_path / "good.jsonl", [{"input": "a", "output": FULL}])
    assert messages(empty) == [f"{empty}: no rows (the file is empty or blank)"]
    assert [str(e) for e in validate([good, empty]).errors] == [
        f"{empty}: no rows (the file is empty or blank)"
    ]
    bad = write(tmp_path / "bad.jsonl", [{"input": "a"}])
    assert messages(bad) == [f"{bad}:1: missing key 'output'"]  # already reported: no extra
    (tmp_path / "d").mkdir()
    with pytest.raises(UserError, match=r"no \.jsonl files in"):
        resolve_paths([str(tmp_path / "d")])


def test_huge_single_line_is_reported_not_loaded(tmp_path: Path) -> None:
    p = tmp_path / "big.jsonl"
    p.write_bytes(b'{"input": "' + b"x" * (50 * 1024 * 1024) + b'", "output": "lex: a"}\n')
    (problem,) = list(read_examples(p))
    assert str(problem) == f"{p}:1: line is 52.4 MB, over the 1 MiB limit for one example"


def test_truncate_hyde_at_sentence_boundary() -> None:
    text = "First sentence is here and long enough to count. " * 5
    cut = truncate_hyde(text)
    assert len(cut) <= 150 and cut.endswith(".") and cut in text
    assert truncate_hyde("short.") == "short."
    words = "word " * 60
    assert truncate_hyde(words).endswith("word.")


def test_normalize_orders_hyde_first() -> None:
    ex = parse_record({"input": "  q  x ", "output": "lex: a b\nvec: c d e\nhyde: h"})
    assert normalize(ex).output == "hyde: h\nlex: a b\nvec: c d e"
    assert normalize(ex).query == "q x"


def test_variants_from_full_examples() -> None:
    ex = parse_record({"input": "q", "output": FULL})
    out = [v.to_record() for v in only_variants(ex)]
    assert out == [
        {"input": "q /only:lex", "output": "lex: alpha beta"},
        {"input": "q /only:vec", "output": "vec: what is alpha beta about"},
        {"input": "q /only:hyde", "output": "hyde: A passage."},
    ]
    assert only_variants(parse_record({"input": "q /only:lex", "output": "lex: a"})) == []


def _dataset(tmp_path: Path, n: int = 40) -> list[Path]:
    a = write(tmp_path / "a.jsonl", [{"input": f"query {i}", "output": FULL} for i in range(n)])
    b = write(
        tmp_path / "b.jsonl",
        [
            {"input": "QUERY 1", "output": FULL},  # duplicate of a.jsonl:2
            {"input": "query 3 /only:lex", "output": "lex: alpha beta"},
            {"input": "held out here", "output": FULL},
        ],
    )
    return [a, b]


def test_prepare_dedupes_excludes_keeps_only_and_is_deterministic(tmp_path: Path) -> None:
    files = _dataset(tmp_path)
    evals = tmp_path / "queries.txt"
    evals.write_text("# Heading\nheld out here\n")
    r1 = prepare(files, tmp_path / "o1", evals, val_fraction=0.25, seed=7)
    prepare(files, tmp_path / "o2", evals, val_fraction=0.25, seed=7)
    for name in ("train.jsonl", "val.jsonl", "dataset_info.json"):
        assert (tmp_path / "o1" / name).read_bytes() == (tmp_path / "o2" / name).read_bytes()
    c = r1.info["counts"]
    assert c["rows_read"] == 43
    assert c["duplicates_dropped"] == 1 and c["eval_queries_excluded"] == 1
    assert c["train"] + c["val"] == 41
    assert r1.info["duplicates"] == [f"{files[1]}:1 (same as {files[0]}:2)"]
    train = [json.loads(x) for x in (tmp_path / "o1/train.jsonl").read_text().splitlines()]
    val = [json.loads(x) for x in (tmp_path / "o1/val.jsonl").read_text().splitlines()]
    queries = {r["query"] for r in train + val}
    assert "query 3 /only:lex" in queries and "held out here" not in queries
    # an only-mode variant lands in the same split as its base query
    split_of = {r["query"]: s for s, rows in (("t", train), ("v", val)) for r in rows}
    assert split_of["query 3 /only:lex"] == split_of["query 3"]
    rec = train[0]
    assert rec["text"] == rec["prompt"] + rec["completion"]
    assert rec["messages"][1] == {"role": "assistant", "content": rec["output"]}
    r3 = prepare(files, tmp_path / "o3", evals, val_fraction=0.25, seed=8)
    assert r3.info["inputs_sha256"] != r1.info["inputs_sha256"]


def test_prepare_refuses_invalid_rows(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text('{"input": "q", "output": "nope"}\n')
    with pytest.raises(DataErrors) as e:
        prepare([p], tmp_path / "out", None)
    assert str(e.value.problems[0]).startswith(f"{p}:1: output line 1")


def test_prepare_with_no_train_rows_says_why_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(UserError, match=r"no rows to train on: .*empty.jsonl hold\(s\) no exampl"):
        prepare([empty], out, None)
    two = write(tmp_path / "two.jsonl", [{"input": f"q{i}", "output": FULL} for i in range(2)])
    with pytest.raises(UserError, match=r"val fraction 0\.9 puts all 2 base quer"):
        prepare([two], out, None, val_fraction=0.9)
    evals = tmp_path / "queries.txt"
    evals.write_text("q0\nq1\n")
    with pytest.raises(UserError, match=r"all 2 unique quer.* are eval queries"):
        prepare([two], out, evals)
    assert not out.exists()


def test_prepare_100k_rows(tmp_path: Path) -> None:
    p = write(
        tmp_path / "many.jsonl",
        [{"input": f"query number {i}", "output": FULL} for i in range(100_000)],
    )
    info = prepare([p], tmp_path / "out", None, val_fraction=0.1).info
    assert info["counts"]["train"] == 90_000 and info["counts"]["val"] == 10_000


def test_stats(tmp_path: Path) -> None:
    files = _dataset(tmp_path)
    stats = compute_stats(read_all(files).rows)
    assert stats["rows"] == 43
    assert stats["modes"] == {"full": 42, "lex": 1, "vec": 0, "hyde": 0}
    assert stats["lines_per_type"] == {"hyde": 42, "lex": 43, "vec": 42}
    assert stats["short_query_share"] == round(42 / 43, 3)
