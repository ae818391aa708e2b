"""`qmd-ft data prepare`: all data files → one deterministic train/val split, rendered.

Steps, each reported in `dataset_info.json` so nothing disappears silently: validate (any
error stops), normalize, deduplicate case-insensitively (first occurrence wins), exclude queries
that appear in the eval set, split by base query with a seeded shuffle (so `/only:` variants of
a val query never train), render prompt/completion and chat forms. Same inputs, same bytes.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from qmd_ft import prompt
from qmd_ft.atomic import write_text_atomic
from qmd_ft.data.normalize import normalize
from qmd_ft.data.reader import Problem, Row
from qmd_ft.data.validate import read_all
from qmd_ft.data.writer import write_jsonl
from qmd_ft.errors import UserError
from qmd_ft.queries import read_queries
from qmd_ft.rubric import parse_only_mode

TRAIN_FILE = "train.jsonl"
VAL_FILE = "val.jsonl"
INFO_FILE = "dataset_info.json"


class DataErrors(Exception):
    """Validation errors that stop `prepare`; the CLI prints each as FILE:LINE: reason."""

    def __init__(self, problems: list[Problem]):
        super().__init__(f"{len(problems)} invalid line(s)")
        self.problems = problems


@dataclass(frozen=True)
class PrepareResult:
    """Where the split went and what happened to every input row."""

    out_dir: Path
    info: dict


def inputs_hash(paths: list[Path], evals: Path | None, settings: dict) -> str:
    """sha256 over file names, bytes and settings: the identity of a prepared dataset."""
    h = hashlib.sha256()
    for p in [*paths, *([evals] if evals else [])]:
        h.update(p.name.encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()


def render(row: Row) -> dict:
    """Every form a trainer wants: prompt/completion strings, chat messages, full text."""
    ex = row.example
    output = ex.output
    return {
        "query": ex.query,
        "output": output,
        "prompt": prompt.render_prompt(ex.query),
        "completion": prompt.render_completion(output),
        "text": prompt.render_example(ex.query, output),
        "messages": prompt.messages(ex.query, output),
        "source": row.where,
    }


def count_modes(records: list[dict]) -> dict[str, int]:
    """How many records are full expansions and how many ask for each `/only:` type."""
    counts = {"full": 0, "lex": 0, "vec": 0, "hyde": 0}
    for rec in records:
        counts[parse_only_mode(rec["query"])[0] or "full"] += 1
    return counts


def _no_train_rows(
    paths: list[Path], rows: list[Row], excluded: list[Row], n_val: int, val_fraction: float
) -> None:
    """Raise the UserError saying why no row is left to train on."""
    where = ", ".join(str(p) for p in paths)
    if not rows:
        raise UserError(f"no rows to train on: {where} hold(s) no examples")
    if n_val == 0:
        raise UserError(
            f"no rows to train on: all {len(excluded)} unique quer(ies) in {where} are eval "
            "queries (excluded so evals stay honest)"
        )
    raise UserError(
        f"no rows to train on: val fraction {val_fraction} puts all {n_val} base quer(ies) in "
        "the validation split; lower it (--val-fraction, dataset.eval_split) or add data"
    )


def prepare(
    paths: list[Path],
    out_dir: Path,
    evals: Path | None,
    val_fraction: float = 0.1,
    seed: int = 42,
) -> PrepareResult:
    """Run the whole preparation; raise DataErrors when any input line is invalid.

    A split with no training rows is a UserError (naming why) and writes nothing: an empty
    train.jsonl would only fail later, inside a trainer, far from its cause.
    """
    read = read_all(paths)
    if read.errors:
        raise DataErrors(read.errors)
    rows = [Row(r.path, r.line, normalize(r.example)) for r in read.rows]

    duplicates: list[str] = []
    first: dict[str, Row] = {}
    for row in rows:
        key = row.example.query.casefold()
        if key in first:
            duplicates.append(f"{row.where} (same as {first[key].where})")
        else:
            first[key] = row
    unique = list(first.values())

    eval_queries = {q.text.casefold() for q in read_queries(evals)} if evals else set()
    excluded = [r for r in unique if r.example.base_query.casefold() in eval_queries]
    kept = [r for r in unique if r.example.base_query.casefold() not in eval_queries]

    groups: dict[str, list[Row]] = {}
    for row in kept:
        groups.setdefault(row.example.base_query.casefold(), []).append(row)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    n_val = round(len(keys) * val_fraction)
    if val_fraction > 0 and n_val == 0 and len(keys) > 1:
        n_val = 1
    val_keys = set(keys[:n_val])
    if n_val == len(keys):
        _no_train_rows(paths, rows, excluded, n_val, val_fraction)
    train = [render(r) for k in keys[n_val:] for r in groups[k]]
    val = [render(r) for k in keys[:n_val] for r in groups[k]]
    random.Random(seed + 1).shuffle(train)

    out_dir.mkdir(parents=True, exist_ok=True)
    # The info file, written last, is what marks the dir prepared: until the new splits are
    # all in, no info claims them.
    (out_dir / INFO_FILE).unlink(missing_ok=True)
    write_jsonl(out_dir / TRAIN_FILE, train)  # each split whole or not at all
    write_jsonl(out_dir / VAL_FILE, val)
    settings = {"val_fraction": val_fraction, "seed": seed}

    info = {
        "files": [str(p) for p in paths],
        "evals": str(evals) if evals else None,
        "inputs_sha256": inputs_hash(paths, evals, settings),
        **settings,
        "counts": {
            "rows_read": len(rows),
            "warnings": len(read.warnings),
            "duplicates_dropped": len(duplicates),
            "eval_queries_excluded": len(excluded),
            "train": len(train),
            "val": len(val),
            "val_groups": len(val_keys),
        },
        "train_by_mode": count_modes(train),
        "val_by_mode": count_modes(val),
        "duplicates": duplicates,
        "excluded_as_eval": [r.where for r in excluded],
    }
    write_text_atomic(out_dir / INFO_FILE, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return PrepareResult(out_dir=out_dir, info=info)
