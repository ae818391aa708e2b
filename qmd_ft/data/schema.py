"""The one schema for training examples, and its rules.

An example is a query and typed output lines. Two on-disk forms are accepted:
`{"input": str, "output": "hyde: …\\nlex: …\\nvec: …"}` (QMD's) and the structured
`{"query": str, "output": [["hyde", …], ["lex", …], …]}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from qmd_ft.prompt import OUTPUT_ORDER, format_output
from qmd_ft.rubric import parse_only_mode

LINE_TYPES = OUTPUT_ORDER
SLASHLESS_ONLY = re.compile(r"(?<=\S)\s+only:\s*(lex|vec|hyde)\s*$", re.IGNORECASE)
"""QMD's `qmd_expansion_handcrafted_only.jsonl` spelling, `query only: lex`: rubric v1 reads no
only-mode there (it needs ` /only:`), so such a row is an ordinary query missing its lines."""

ONLY_TYPO = re.compile(r"\s/only:\S*\s*$", re.IGNORECASE)
"""A query ending in `/only:` plus something other than lex/vec/hyde (checked after the real
only-mode parse failed): the rubric would score it as an ordinary query, silently."""


class SchemaError(ValueError):
    """One thing wrong with one example (the message names it; the caller adds FILE:LINE)."""


@dataclass(frozen=True)
class Example:
    """A validated example: the query and its (type, text) lines in file order."""

    query: str
    lines: tuple[tuple[str, str], ...]

    @property
    def only_mode(self) -> str | None:
        """The type an `/only:` query asks for, else None."""
        return parse_only_mode(self.query)[0]

    @property
    def base_query(self) -> str:
        """The query without its `/only:` suffix."""
        return parse_only_mode(self.query)[1]

    def of_type(self, kind: str) -> list[str]:
        """The texts of one line type, in order."""
        return [text for k, text in self.lines if k == kind]

    @property
    def output(self) -> str:
        """Output text, hyde first, then lex, then vec."""
        return format_output(list(self.lines))

    def to_record(self) -> dict[str, str]:
        """The canonical on-disk form."""
        return {"input": self.query, "output": self.output}


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "number" if isinstance(value, int | float) else "null"
    )


def _parse_text_output(output: str) -> list[tuple[str, str]]:
    lines = []
    for n, raw in enumerate(output.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        for kind in LINE_TYPES:
            if line.startswith(kind + ":"):
                text = line[len(kind) + 1 :].strip()
                if not text:
                    raise SchemaError(f"output line {n}: empty {kind}: line")
                lines.append((kind, text))
                break
        else:
            shown = line if len(line) <= 60 else line[:57] + "..."
            raise SchemaError(f"output line {n}: {shown!r} does not start with hyde:, lex: or vec:")
    return lines


def _parse_structured_output(output: list[Any]) -> list[tuple[str, str]]:
    lines = []
    for n, item in enumerate(output, start=1):
        if (
            not isinstance(item, list | tuple)
            or len(item) != 2
            or not all(isinstance(x, str) for x in item)
        ):
            raise SchemaError(f"output item {n}: expected [type, text] strings")
        kind, text = item[0].strip(), item[1].strip()
        if kind not in LINE_TYPES:
            raise SchemaError(f"output item {n}: type {kind!r} is not hyde, lex or vec")
        if not text or "\n" in text:
            raise SchemaError(f"output item {n}: text must be one non-empty line")
        lines.append((kind, text))
    return lines


def parse_record(obj: Any) -> Example:
    """Check one decoded JSON value against the schema; raise SchemaError with the reason."""
    if not isinstance(obj, dict):
        raise SchemaError(f"expected a JSON object, got {_type_name(obj)}")
    key = "input" if "input" in obj else "query" if "query" in obj else None
    if key is None:
        raise SchemaError("missing key 'input'")
    if "output" not in obj:
        raise SchemaError("missing key 'output'")
    query, output = obj[key], obj["output"]
    if not isinstance(query, str):
        raise SchemaError(f"'{key}' must be a string, got {_type_name(query)}")
    if not query.strip():
        raise SchemaError(f"'{key}' is empty")
    if "\n" in query.strip():
        raise SchemaError(f"'{key}' spans several lines")
    if isinstance(output, str):
        lines = _parse_text_output(output)
    elif isinstance(output, list):
        lines = _parse_structured_output(output)
    else:
        raise SchemaError(f"'output' must be a string or a list, got {_type_name(output)}")
    if not lines:
        raise SchemaError("empty output")
    example = Example(query=query.strip(), lines=tuple(lines))
    kinds = [k for k, _ in lines]
    if kinds.count("hyde") > 1:
        raise SchemaError(f"{kinds.count('hyde')} hyde: lines (at most one)")
    only = example.only_mode
    if only is not None:
        if only not in kinds:
            raise SchemaError(f"/only:{only} query has no {only}: line")
        others = sorted({k for k in kinds if k != only})
        if others:
            # The rubric takes 10 points per unwanted line: such a target teaches the penalty.
            found = ", ".join(f"{k}:" for k in others)
            raise SchemaError(f"/only:{only} query has {found} line(s); answer with {only}: only")
    elif typo := ONLY_TYPO.search(example.query):
        raise SchemaError(f"query ends in {typo.group().strip()!r}: /only: takes lex, vec or hyde")
    else:
        missing = [k for k in ("lex", "vec") if k not in kinds]
        if missing and (slashless := slashless_only(example.query)):
            base, kind = slashless
            raise SchemaError(
                f"query ends in 'only: {kind}' without the slash, which rubric v1 scores as an "
                f"ordinary query; it most likely means '{base} /only:{kind}' "
                "(rewrite the file with: qmd-ft data migrate-only FILE -o NEW_FILE)"
            )
        if missing:
            raise SchemaError("no " + " and no ".join(f"{k}: line" for k in missing))
    return example


def slashless_only(query: str) -> tuple[str, str] | None:
    """`("ssh keys", "lex")` for `ssh keys only: lex`; None for any other query."""
    m = SLASHLESS_ONLY.search(query)
    if m is None:
        return None
    return query[: m.start()].strip(), m.group(1).lower()
