"""The table of technical terms and the everyday senses they get misread as.

A query like "ruby gem install" expanded into "gemstone jewelry" teaches the model to search
for the wrong documents. The table (`term_senses.yaml`, shipped with the package, extensible
with a user file) says which words betray the wrong sense and which query words say the query
is technical; this module loads it and finds misreadings in one example.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from qmd_ft.data.schema import Example
from qmd_ft.errors import UserError

PACKAGED_TABLE = "term_senses.yaml"


def _words_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    """Whole-word, case-insensitive match of any of `words`, each also with -s/-es."""
    alternatives = "|".join(
        r"\s+".join(map(re.escape, w.split())) for w in sorted(words, key=len, reverse=True)
    )
    return re.compile(rf"(?<!\w)(?:{alternatives})(?:e?s)?(?!\w)", re.IGNORECASE)


@dataclass(frozen=True)
class TermSense:
    """One technical term, one everyday sense it can be misread as, and the evidence for both."""

    term: str
    sense: str
    wrong: tuple[str, ...]
    context: tuple[str, ...]
    _term_re: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _wrong_re: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _context_re: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Compiled once per entry: a data file has thousands of rows to check against them.
        object.__setattr__(self, "_term_re", _words_pattern((self.term,)))
        object.__setattr__(self, "_wrong_re", _words_pattern(self.wrong))
        object.__setattr__(self, "_context_re", _words_pattern(self.context))

    def cue(self, query: str) -> str | None:
        """The query word that makes this term technical, or None when the check doesn't apply.

        It applies when the query holds the term and a context word, and no wrong-sense word
        (a query that names the everyday sense may well mean it).
        """
        if not self._term_re.search(query) or self._wrong_re.search(query):
            return None
        m = self._context_re.search(query)
        return m.group(0).lower() if m else None

    def wrong_word(self, line: str) -> str | None:
        """The first wrong-sense word in a line, or None."""
        m = self._wrong_re.search(line)
        return m.group(0).lower() if m else None


@dataclass(frozen=True)
class Misreading:
    """One output line that reads a technical term in its everyday sense."""

    term: str
    sense: str
    kind: str
    index: int  # 1-based among the example's lines of this kind
    position: int  # 0-based in Example.lines
    found: str
    cue: str

    def __str__(self) -> str:
        return (
            f"term '{self.term}' read as {self.sense} in {self.kind} line {self.index} "
            f"('{self.found}'; query has '{self.cue}')"
        )


def misreadings(example: Example, senses: list[TermSense]) -> list[Misreading]:
    """Every line that misreads a term the query uses technically, one finding per wrong word."""
    query = example.base_query
    active = [(s, cue) for s in senses if (cue := s.cue(query)) is not None]
    if not active:
        return []
    found: list[Misreading] = []
    seen_per_kind: dict[str, int] = {}
    for position, (kind, text) in enumerate(example.lines):
        seen_per_kind[kind] = seen_per_kind.get(kind, 0) + 1
        words_reported: set[str] = set()
        for sense, cue in active:
            word = sense.wrong_word(text)
            # "ruby gem" and "gemstone": one finding per wrong word, not one per term.
            if word is not None and word not in words_reported:
                words_reported.add(word)
                index = seen_per_kind[kind]
                found.append(Misreading(sense.term, sense.sense, kind, index, position, word, cue))
    return found


def _word_list(entry: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    """A non-empty list of lower-cased words: an empty one would match nothing, silently."""
    value = entry.get(key)
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: '{key}' must be a non-empty list of words")
    words = tuple(str(w).strip().lower() for w in value if str(w).strip())
    if len(words) != len(value):
        raise UserError(f"{where}: '{key}' holds an empty word")
    return words


def parse_table(data: Any, source: str) -> list[TermSense]:
    """Check a decoded table (`terms:` list of entries); errors name the entry."""
    if not isinstance(data, dict) or not isinstance(data.get("terms"), list):
        raise UserError(f"{source}: expected a mapping with a 'terms:' list")
    senses = []
    for n, entry in enumerate(data["terms"], start=1):
        where = f"{source}: terms[{n}]"
        if not isinstance(entry, dict):
            raise UserError(f"{where}: expected a mapping")
        unknown = set(entry) - {"term", "sense", "wrong", "context"}
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        term, sense = entry.get("term"), entry.get("sense")
        if not isinstance(term, str) or not term.strip():
            raise UserError(f"{where}: 'term' must be a non-empty string")
        if not isinstance(sense, str) or not sense.strip():
            raise UserError(f"{where}: 'sense' must be a non-empty string")
        term = term.strip().lower()
        context = _word_list(entry, "context", where)
        if term in context:
            raise UserError(f"{where}: 'context' must not hold the term itself")
        senses.append(TermSense(term, sense.strip(), _word_list(entry, "wrong", where), context))
    return senses


def _load_yaml(text: str, source: str) -> Any:
    """YAML errors become one-line user errors naming the file."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserError(f"{source}: not valid YAML ({e.__class__.__name__})") from e


def load_senses(extra: Path | None = None) -> list[TermSense]:
    """The packaged table, plus the entries of `extra` when given."""
    packaged = resources.files("qmd_ft.data").joinpath(PACKAGED_TABLE)
    text = packaged.read_text(encoding="utf-8")
    senses = parse_table(_load_yaml(text, PACKAGED_TABLE), PACKAGED_TABLE)
    if extra is not None:
        try:
            text = extra.read_text(encoding="utf-8")
        except OSError as e:
            raise UserError(f"{extra}: cannot read terms file ({e.strerror})") from e
        except UnicodeDecodeError as e:
            raise UserError(f"{extra}: terms file is not valid UTF-8") from e
        senses += parse_table(_load_yaml(text, str(extra)), str(extra))
    return senses
