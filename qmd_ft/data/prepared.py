"""The prepared dataset directory (`qmd-ft data prepare` output) as the trainers see it.

One reader for both backends, so a damaged split gives the same `FILE:LINE: reason` on cuda
and mlx instead of a JSONDecodeError or KeyError deep inside a trainer. Beside it, what
`train` checks about the directory before it loads anything: whether `dataset.name` can be a
local directory at all, and whether the files it was prepared from have changed since (its
`dataset_info.json` records their sha256), so a run never trains on stale data unannounced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qmd_ft.data.prepare import INFO_FILE, TRAIN_FILE, inputs_hash
from qmd_ft.errors import UserError

SFT_KEYS = ("prompt", "completion")
"""What every trainer reads from a row: the rendered prompt and the completion after it.
GRPO uses only the prompt, but prepared rows always carry both."""

FIELD_TYPES: dict[str, type] = {"prompt": str, "completion": str, "text": str, "messages": list}
"""The JSON type each known key of a prepared row must have."""

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
"""`owner/name`, the shape of a Hugging Face dataset id (and of a relative two-part path)."""


def _row_problem(text: str, require: Sequence[str]) -> tuple[dict[str, Any] | None, str | None]:
    """The parsed row, or why this line is not a usable prepared row."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        return None, f"invalid JSON: {e.msg} (column {e.colno})"
    except RecursionError:
        return None, "JSON nested too deeply"
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    missing = [k for k in require if k not in obj]
    if missing:
        return None, f"missing key(s) {', '.join(repr(k) for k in missing)}"
    for key in require:
        kind = FIELD_TYPES.get(key)
        if kind is not None and not isinstance(obj[key], kind):
            return None, f"{key!r} must be a {'string' if kind is str else 'list'}"
    return obj, None


def read_split(
    data_dir: Path,
    file_name: str,
    limit: int | None = None,
    require: Sequence[str] = SFT_KEYS,
) -> list[dict[str, Any]]:
    """The rows of `data_dir/file_name`, at most `limit` of them, each holding `require`.

    A missing val file is an empty split; a missing or empty train file is an error that says
    how to make one. Every line is checked (a bad row anywhere means the split is damaged, not
    just the part a `limit` would read); the first problem is raised as one `FILE:LINE: reason`
    line with the number of others, since the fix (prepare again) is the same for all.
    """
    path = data_dir / file_name
    if not path.is_file():
        if file_name == TRAIN_FILE:
            raise UserError(
                f"{path}: not found; prepare the data first: qmd-ft data prepare --out {data_dir}"
            )
        return []
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    with path.open("rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                problems.append(f"{path}:{n}: not valid UTF-8 (byte {e.start + 1} of the line)")
                continue
            if not text.strip():
                continue
            row, problem = _row_problem(text, require)
            if problem is not None:
                problems.append(f"{path}:{n}: {problem}")
            elif row is not None:
                rows.append(row)
    if problems:
        more = f" (and {len(problems) - 1} more bad line(s))" if len(problems) > 1 else ""
        raise UserError(
            f"{problems[0]}{more}; rebuild the split: qmd-ft data prepare --out {data_dir}"
        )
    if file_name == TRAIN_FILE and not rows:
        raise UserError(f"{path}: no training examples")
    return rows[:limit] if limit else rows


def read_info(data_dir: Path) -> dict[str, Any] | None:
    """`dataset_info.json` of a prepared dir, None when there is none (e.g. a hand-made dir)."""
    path = data_dir / INFO_FILE
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e}); prepare the data again") from e
    return info if isinstance(info, dict) else None


def data_hash(data_dir: Path) -> str | None:
    """The prepared dataset's identity (`inputs_sha256` of dataset_info.json), for manifests."""
    info = read_info(data_dir)
    return info.get("inputs_sha256") if info else None


@dataclass(frozen=True)
class Sources:
    """What a prepared dir was made from, as its dataset_info.json records it."""

    files: list[Path]
    evals: Path | None
    val_fraction: float
    seed: int
    sha256: str

    @property
    def available(self) -> bool:
        """True when every recorded input is still here (else staleness cannot be told)."""
        return all(p.is_file() for p in [*self.files, *([self.evals] if self.evals else [])])

    def changed(self) -> bool:
        """True when the inputs, hashed as `prepare` hashes them, differ from the record."""
        settings = {"val_fraction": self.val_fraction, "seed": self.seed}
        return inputs_hash(self.files, self.evals, settings) != self.sha256

    def describe(self) -> str:
        """The recorded inputs, shortened for one line."""
        names = [str(p) for p in [*self.files, *([self.evals] if self.evals else [])]]
        shown = ", ".join(names[:3])
        return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def recorded_sources(data_dir: Path) -> Sources | None:
    """The inputs `data_dir` was prepared from; None when it does not record them."""
    info = read_info(data_dir)
    if not info:
        return None
    try:
        return Sources(
            files=[Path(p) for p in info["files"]],
            evals=Path(info["evals"]) if info.get("evals") else None,
            val_fraction=info["val_fraction"],
            seed=info["seed"],
            sha256=info["inputs_sha256"],
        )
    except (KeyError, TypeError):
        return None


def stale_sources(data_dir: Path) -> Sources | None:
    """The recorded inputs of `data_dir` when they still exist but have changed since.

    None when the dir is current, or records no inputs, or some input is gone (prepared on
    another machine, or the job of `--hf-jobs`, which gets the prepared dir only): then
    nothing here says the split is out of date, and it is used as it is.
    """
    sources = recorded_sources(data_dir)
    if sources is None or not sources.available or not sources.changed():
        return None
    return sources


def check_dataset_name(name: str) -> None:
    """Refuse a `dataset.name` that cannot be a prepared directory, before anything runs.

    train reads (or prepares) a local directory only. A name shaped `owner/name` that is not
    a directory and whose parent does not exist either is a Hub dataset id, not a path train
    would create next to the project's data (as `data/train` is): say how to import it.
    """
    path = Path(name)
    if path.is_dir():
        return
    if path.exists():
        raise UserError(
            f"dataset.name {name}: is a file; it names the prepared directory "
            "(qmd-ft data prepare --out DIR writes train.jsonl and val.jsonl there)"
        )
    if HUB_ID.fullmatch(name) and not path.parent.exists():
        raise UserError(
            f"dataset.name {name}: no such directory, and train does not download Hub datasets: "
            f"import it first (qmd-ft data import-hf {name} -o data/{path.name}.jsonl), then "
            "point dataset.name at a local directory to prepare it in, such as data/train"
        )
