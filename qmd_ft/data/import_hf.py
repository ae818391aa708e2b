"""`qmd-ft data import-hf`: turn a dataset of queries and expansions into our schema.

Sources: a Hugging Face hub id, a directory saved with `Dataset.save_to_disk`, a directory of
data files, or one local `.jsonl`/`.json`/`.parquet` file (read without `datasets`, so small
imports work where it is not installed). Every row is either written or reported with where it
is (`FILE:LINE` in a .jsonl file, `SOURCE row N` elsewhere; both 1-based, as editors count) and
the reason: an import that silently loses rows would skew the training mix unseen.

The field mapping is explicit (`--query-field`, `--output-field`) or found from the columns:
a query column (input/query/question/prompt) with an output column (output/expansion/
completion/response/answer) whose values are our text format, `[type, text]` pairs, lines
like "lex: …", or a {"lex": […], "vec": […], "hyde": "…"} object; or per-type columns
`lex`/`vec`/`hyde`; or chat rows (`messages`, as QMD's own training sets are published).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qmd_ft.data.schema import LINE_TYPES, SchemaError, parse_record
from qmd_ft.errors import UserError
from qmd_ft.reward import clean, query_from_prompt

QUERY_FIELDS = ("input", "query", "question", "prompt")
OUTPUT_FIELDS = ("output", "expansion", "completion", "response", "answer")
CHAT_FIELD = "messages"
DISK_MARKERS = ("dataset_dict.json", "dataset_info.json", "state.json")


@dataclass(frozen=True)
class Unreadable:
    """A source row that could not even be decoded (kept in place so indices stay true)."""

    reason: str


class JsonlRows(list[Any]):
    """The rows of a .jsonl file with the line each came from (blank lines hold no row)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[int] = []


def row_locator(source: str, rows: Sequence[Any]) -> Callable[[int], str]:
    """Where the row at a 0-based index is, for messages: `FILE:LINE`, else `SOURCE row N`."""
    lines = rows.lines if isinstance(rows, JsonlRows) else None
    if lines is not None:
        return lambda index: f"{source}:{lines[index]}"
    return lambda index: f"{source} row {index + 1}"


@dataclass(frozen=True)
class FieldMap:
    """Where a row's query and output come from."""

    query: str | None  # None: chat rows
    output: str | None  # None: per-type columns or chat rows
    chat: bool = False

    def describe(self) -> str:
        """One line saying which columns were used, so a wrong guess is seen before trusting it."""
        if self.chat:
            return f"query and output from '{CHAT_FIELD}' (chat rows)"
        source = f"'{self.output}'" if self.output else "columns " + "/".join(LINE_TYPES)
        return f"query from '{self.query}', output from {source}"


@dataclass
class ImportResult:
    """Records to write and, for every other row, where it is and why it was skipped."""

    mapping: FieldMap
    rows: int = 0
    records: list[dict[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)

    def skip(self, where: str, reason: str, detail: str) -> None:
        """Record a skipped row; `reason` is the summary's key, `detail` says what exactly."""
        self.skipped.append((where, f"{reason}: {detail}"))
        self.reasons[reason] += 1


def _need_datasets() -> Any:
    """`datasets` is an optional extra: imported only for sources that need it."""
    try:
        import datasets
    except ImportError as e:
        raise UserError(
            "this source needs the `datasets` package: pip install datasets "
            "(or use a local .jsonl/.json/.parquet file)"
        ) from e
    return datasets


def _read_jsonl(path: Path) -> JsonlRows:
    """One row per non-blank line; an undecodable line stays a row, to be reported."""
    rows = JsonlRows()
    with path.open("rb") as f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            rows.lines.append(n)
            try:
                rows.append(json.loads(raw))
            except (UnicodeDecodeError, ValueError, RecursionError) as e:
                rows.append(Unreadable(f"not valid JSON ({e.__class__.__name__})"))
    return rows


def _read_file(path: Path) -> Sequence[Any]:
    """The rows of one local file, by its suffix."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        try:
            data = json.loads(path.read_bytes())
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise UserError(f"{path}: not valid JSON ({e.__class__.__name__})") from e
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise UserError(f"{path}: expected a JSON array of rows (or {{'data': [...]}})")
        return data
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise UserError("reading .parquet needs pyarrow: pip install pyarrow") from e
        return pq.read_table(path).to_pylist()
    raise UserError(f"{path}: unsupported file type (use .jsonl, .json or .parquet)")


def load_rows(source: str, split: str) -> Sequence[Any]:
    """The rows of one split of a local file, a saved dataset, a data dir or a hub dataset."""
    path = Path(source)
    if path.is_file():
        return _read_file(path)
    if path.suffix.lower() in (".jsonl", ".json", ".parquet"):
        raise UserError(f"{source}: no such file")
    datasets = _need_datasets()
    try:
        if path.is_dir() and any((path / m).exists() for m in DISK_MARKERS):
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    splits = ", ".join(loaded)
                    raise UserError(f"{source}: no split {split!r} (splits: {splits})")
                loaded = loaded[split]
            return loaded
        return datasets.load_dataset(str(path) if path.is_dir() else source, split=split)
    except (OSError, ValueError) as e:  # not found, offline, unknown split, bad files
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise UserError(f"{source}: cannot load dataset ({first})") from e


def columns(rows: Sequence[Any]) -> list[str]:
    """Column names: the dataset's own, or every key seen in the rows, in first-seen order."""
    names = getattr(rows, "column_names", None)
    if names is not None:
        return list(names)
    seen: dict[str, None] = {}
    for row in rows:
        if isinstance(row, dict):
            seen.update(dict.fromkeys(row))
    return list(seen)


def resolve_mapping(
    columns: list[str], query_field: str | None, output_field: str | None
) -> FieldMap:
    """The mapping the options name, else the first known column names found."""
    for name, flag in ((query_field, "--query-field"), (output_field, "--output-field")):
        if name is not None and name not in columns:
            raise UserError(f"{flag}: no column {name!r} (columns: {', '.join(columns)})")
    query = query_field or next((c for c in QUERY_FIELDS if c in columns), None)
    output = output_field or next((c for c in OUTPUT_FIELDS if c in columns), None)
    has_types = any(t in columns for t in LINE_TYPES)
    if query is None or (output is None and not has_types):
        if CHAT_FIELD in columns and query_field is None and output_field is None:
            return FieldMap(None, None, chat=True)
        missing = "--query-field" if query is None else "--output-field"
        raise UserError(
            f"cannot tell which column holds the {'query' if query is None else 'output'}: "
            f"columns are {', '.join(columns) or '(none)'}; pass {missing}"
        )
    return FieldMap(query, output)


def _lines(kind: str, value: Any) -> list[list[str]]:
    """[type, text] pairs from one type's value: a string (one line per line) or a list."""
    if value is None:
        return []
    items = value.split("\n") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise SchemaError(f"'{kind}' must be a string or a list of strings")
    return [[kind, x] for x in items if x.strip()]


def _output(value: Any) -> Any:
    """Our text or structured form from the shapes datasets use for expansions."""
    if isinstance(value, dict):
        unknown = set(value) - set(LINE_TYPES)
        if unknown:
            raise SchemaError(f"output object has key(s) {', '.join(sorted(unknown))}")
        return [pair for kind in LINE_TYPES for pair in _lines(kind, value.get(kind))]
    if isinstance(value, list) and value and all(isinstance(x, str) for x in value):
        return "\n".join(value)  # ["lex: …", "vec: …"]
    return value


def _chat_record(row: dict[str, Any]) -> dict[str, Any]:
    """Query from the last user turn (after the instruction), output from the last answer."""
    messages = row.get(CHAT_FIELD)
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise SchemaError(f"'{CHAT_FIELD}' must be a list of chat messages")
    answers = [m.get("content") for m in messages if m.get("role") == "assistant"]
    if not answers:
        raise SchemaError("no assistant message")
    answer = answers[-1]
    if not isinstance(answer, str):
        raise SchemaError("assistant message content is not a string")
    # Qwen3 chat data carries an empty <think></think> block before the answer: not ours.
    return {"input": query_from_prompt(messages), "output": clean(answer)[0]}


def to_record(row: Any, mapping: FieldMap) -> dict[str, Any]:
    """The row as an `{"input", "output"}` record for `parse_record` (SchemaError if it can't)."""
    if isinstance(row, Unreadable):
        raise SchemaError(row.reason)
    if not isinstance(row, dict):
        raise SchemaError("row is not an object")
    if mapping.chat:
        return _chat_record(row)
    query = row.get(mapping.query or "")
    if query is None:
        raise SchemaError(f"no value in '{mapping.query}'")
    if mapping.output is not None:
        return {"input": query, "output": _output(row.get(mapping.output))}
    pairs = [pair for kind in LINE_TYPES for pair in _lines(kind, row.get(kind))]
    return {"input": query, "output": pairs}


def import_rows(
    rows: Sequence[Any],
    mapping: FieldMap,
    on_row: Callable[[], None] | None = None,
    where: Callable[[int], str] | None = None,
) -> ImportResult:
    """Validate every row; the first of each query (case-insensitive) wins, later ones skip.

    `where` names a row by its 0-based index in messages (see `row_locator`); default `row N`.
    """
    locate = where or (lambda index: f"row {index + 1}")
    result = ImportResult(mapping)
    first: dict[str, int] = {}
    for index, row in enumerate(rows):
        result.rows += 1
        try:
            example = parse_record(to_record(row, mapping))
        except SchemaError as e:
            result.skip(locate(index), "invalid", str(e))
        else:
            key = example.query.casefold()
            if key in first:
                result.skip(locate(index), "duplicate", f"same query as {locate(first[key])}")
            else:
                first[key] = index
                result.records.append(example.to_record())
        if on_row is not None:
            on_row()
    return result
