"""What every results document shares: the pydantic base, how it is generated, JSON in and out.

Eval results (`qmd_ft.evaluation.results`) and retrieval results (`qmd_ft.retrieval.results`)
are files other tools read (the gate, published cards, `eval --json`), so the models keep
their JSON exactly: a key absent from a file stays absent when it is written again
(`exclude_unset`), keys this version does not know are kept (`extra="allow"`), and keys that
are not Python names (`recall@10`) are aliases. Only what a consumer relies on is required,
so a file from an older release still loads; a file that is not one fails on one line naming
the file and the bad key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from qmd_ft.errors import UserError


class ResultsModel(BaseModel):
    """A part of a results document; `to_json` gives back the document's own keys."""

    model_config = ConfigDict(extra="allow", validate_by_name=True, validate_by_alias=True)

    def to_json(self) -> dict[str, Any]:
        """The JSON object as written: aliases as keys, only the keys that were set."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class Sampling(ResultsModel):
    """How a sampled eval generated (QMD's serving settings); absent for a greedy eval."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    samples: int = 1
    seed: int = 0

    def key(self) -> tuple[float, int, float, int]:
        """What makes two evals comparable: the same settings and number of samples."""
        return (self.temperature, self.top_k, self.top_p, self.samples)


GREEDY = Sampling()
"""The `Sampling.key()` of a greedy eval (no `sampling` record)."""


class ExportedFrom(ResultsModel):
    """The merged model a scored GGUF was exported from (publish checks its hash)."""

    model: str
    model_sha256: str | None


Doc = TypeVar("Doc", bound=ResultsModel)


def _where(loc: tuple[str | int, ...]) -> str:
    """A pydantic error location as a key path: `results[2].reward`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def problem(e: ValidationError) -> str:
    """The first problem of a validation error, with its key path, on one line."""
    first = e.errors()[0]
    more = len(e.errors()) - 1
    line = f"{_where(first['loc'])}: {first['msg']}"
    return line + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


def read_document(path: str | Path, model: type[Doc], what: str) -> Doc:
    """Parse a results file into `model`; any fault is one UserError line naming the file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"{p}: cannot read ({e.strerror})") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{p}: not a JSON {what} file ({e})") from e
    except RecursionError as e:
        raise UserError(f"{p}: not a {what} file (JSON nested too deeply)") from e
    if not isinstance(data, dict):
        raise UserError(f"{p}: not a qmd-ft {what} file (not a JSON object)")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise UserError(f"{p}: not a qmd-ft {what} file: {problem(e)}") from e


def write_document(doc: BaseModel, path: Path) -> None:
    """Write a document (UTF-8, indented, its own key order); the folder is made if needed."""
    data = doc.to_json() if isinstance(doc, ResultsModel) else doc.model_dump(mode="json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
