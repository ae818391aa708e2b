"""`data import-hf`: local datasets of every supported shape; every row written or reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qmd_ft.data.import_hf import (
    FieldMap,
    columns,
    import_rows,
    load_rows,
    resolve_mapping,
    row_locator,
)
from qmd_ft.data.reader import Row, read_examples
from qmd_ft.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
TEXT = "hyde: A short passage about the topic.\nlex: alpha beta\nvec: what is alpha beta about"


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def imported(source: Path, split: str = "train", **fields: str | None):
    rows = load_rows(str(source), split)
    mapping = resolve_mapping(columns(rows), fields.get("query_field"), fields.get("output_field"))
    return import_rows(rows, mapping, where=row_locator(str(source), rows))


def test_every_output_shape_and_every_skip_reason(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write_jsonl(
        path,
        [
            {"query": "text form", "output": TEXT},
            {"query": "pairs form", "output": [["lex", "a b"], ["vec", "c d e"]]},
            {"query": "object form", "output": {"lex": ["a b", "c d"], "vec": "e f g"}},
            {"query": "lines form", "output": ["lex: a b", "vec: c d e"]},
            {"query": "no vec", "output": "lex: a b"},
            {"query": None, "output": TEXT},
            {"query": "TEXT FORM", "output": TEXT},
            {"query": "bad object", "output": {"keywords": ["a"]}},
            [1, 2],
        ],
    )
    with path.open("a") as f:
        f.write("\n{not json\n")  # a blank line first: FILE:LINE counts lines, not rows
    result = imported(path)
    assert result.mapping == FieldMap("query", "output")
    assert [r["input"] for r in result.records] == [
        "text form",
        "pairs form",
        "object form",
        "lines form",
    ]
    assert result.records[2]["output"] == "lex: a b\nlex: c d\nvec: e f g"
    assert result.skipped == [
        (f"{path}:5", "invalid: no vec: line"),
        (f"{path}:6", "invalid: no value in 'query'"),
        (f"{path}:7", f"duplicate: same query as {path}:1"),
        (f"{path}:8", "invalid: output object has key(s) keywords"),
        (f"{path}:9", "invalid: row is not an object"),
        (f"{path}:11", "invalid: not valid JSON (JSONDecodeError)"),
    ]
    assert result.rows == 10 == len(result.records) + len(result.skipped)
    assert result.reasons == {"invalid": 5, "duplicate": 1}


def test_per_type_columns_and_explicit_fields(tmp_path: Path) -> None:
    per_type = write_jsonl(
        tmp_path / "types.jsonl",
        [{"input": "q one", "lex": ["a b", "c d"], "vec": ["e f g"], "hyde": "A passage."}],
    )
    result = imported(per_type)
    assert result.mapping == FieldMap("input", None)
    assert result.records == [
        {"input": "q one", "output": "hyde: A passage.\nlex: a b\nlex: c d\nvec: e f g"}
    ]

    custom = write_jsonl(tmp_path / "custom.jsonl", [{"q": "q two", "expanded": TEXT}])
    with pytest.raises(UserError, match="cannot tell which column holds the query"):
        imported(custom)
    result = imported(custom, query_field="q", output_field="expanded")
    assert [r["input"] for r in result.records] == ["q two"]
    with pytest.raises(UserError, match=r"--output-field: no column 'nope' \(columns: q, expanded"):
        imported(custom, query_field="q", output_field="nope")


def test_chat_rows_lose_the_empty_think_block(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "chat.jsonl",
        [
            {
                "messages": [
                    {"role": "user", "content": "/no_think Expand this search query: auth"},
                    {"role": "assistant", "content": "<think>\n\n</think>\n\n" + TEXT},
                ]
            },
            {"messages": [{"role": "user", "content": "only a question"}]},
        ],
    )
    result = imported(path)
    assert result.mapping.chat
    assert result.records == [{"input": "auth", "output": TEXT}]
    assert result.skipped == [(f"{path}:2", "invalid: no assistant message")]


def test_parquet_file(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "q", "expansion": TEXT}]), path)
    result = imported(path)
    assert result.mapping == FieldMap("question", "expansion")
    assert len(result.records) == 1


def test_saved_dataset_dict_and_its_splits(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    saved = tmp_path / "saved"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list([{"input": "q one", "output": TEXT}]),
            "test": datasets.Dataset.from_list([{"input": "q two", "output": "lex: a"}]),
        }
    ).save_to_disk(str(saved))
    assert [r["input"] for r in imported(saved).records] == ["q one"]
    assert imported(saved, split="test").skipped == [(f"{saved} row 1", "invalid: no vec: line")]
    with pytest.raises(UserError, match=r"no split 'dev' \(splits: train, test\)"):
        load_rows(str(saved), "dev")


def test_missing_local_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        load_rows(str(tmp_path / "nope.jsonl"), "train")
    with pytest.raises(UserError, match="unsupported file type"):
        load_rows(str(write_jsonl(tmp_path / "d.csv", [])), "train")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qmd_ft", "data", "import-hf", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )


def test_cli_writes_valid_rows_and_lists_the_skipped(tmp_path: Path) -> None:
    source = write_jsonl(
        tmp_path / "d.jsonl",
        [{"query": "q one", "output": TEXT}, {"query": "q two", "output": "vec: a b c"}],
    )
    out = tmp_path / "out.jsonl"
    r = run(str(source), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert f"{source}:2: skipped: invalid: no lex: line" in r.stdout
    assert f"2 row(s): 1 imported, 1 skipped (invalid: 1) → {out}" in r.stdout
    assert [type(i) for i in read_examples(out)] == [Row]

    r = run(str(source), "-o", str(source))
    assert r.returncode == 1 and "refusing to overwrite an input file" in r.stderr

    empty = write_jsonl(tmp_path / "e.jsonl", [{"query": "q", "output": "vec: a b c"}])
    r = run(str(empty), "-o", str(tmp_path / "none.jsonl"))
    assert r.returncode == 1 and "nothing to write" in r.stderr
    assert not (tmp_path / "none.jsonl").exists()


def test_cli_data_directory_through_datasets(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    data_dir = tmp_path / "ds"
    data_dir.mkdir()
    write_jsonl(data_dir / "train.jsonl", [{"input": "q one", "output": TEXT}])
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_DATASETS_CACHE": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    out = tmp_path / "out.jsonl"
    r = run(str(data_dir), "-o", str(out), env=env)
    assert r.returncode == 0, r.stderr
    assert "1 row(s): 1 imported, 0 skipped" in r.stdout
