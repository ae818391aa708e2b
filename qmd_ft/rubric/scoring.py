"""Rubric v1's scores: the full-expansion and `/only:` rules, totals, rating and reward.

`score` applies rules 1-7 of `shared/spec/scoring.md` in order: it cleans and parses the
completion (`qmd_ft.rubric.lines`), then scores the lines with the checks of
`qmd_ft.rubric.checks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qmd_ft.prompt import ONLY_TYPES
from qmd_ft.rubric.checks import (
    echo_count,
    extract_entities,
    is_generic,
    keeps_entity,
    keeps_key_terms,
    key_terms,
    non_diverse_pairs,
    repetition_penalty,
)
from qmd_ft.rubric.lines import clean, leaks, parse, parse_only_mode

RUBRIC_VERSION = "v1"

_RATINGS = ((80.0, "Excellent"), (60.0, "Good"), (40.0, "Acceptable"), (20.0, "Poor"))
FAILURE_MAX_POSSIBLE = 100
FULL_MAX_POSSIBLE = 120
FULL_MAX_POSSIBLE_WITH_HYDE = 140
ONLY_MAX_POSSIBLE = 120


@dataclass(frozen=True)
class ScoreResult:
    """One scored completion: the sub-scores plus what they were computed from.

    `total` and `entity` are the reported (floored at 0) values; the deductions say why points
    were lost, so a low score can be read without re-deriving the rubric.
    """

    format: int
    diversity: int
    hyde: int
    quality: int
    entity: int
    think_bonus: int
    total: int
    max_possible: int
    percentage: float
    rating: str
    reward: float
    lex: tuple[str, ...]
    vec: tuple[str, ...]
    hyde_lines: tuple[str, ...]
    deductions: tuple[str, ...]
    entities: tuple[str, ...]
    only_mode: str | None
    used_thinking: bool

    def sub_scores(self) -> dict[str, Any]:
        """The `qmd-ft score --json` line: the numbers only, in the CLI contract's key order."""
        return {
            "format": self.format,
            "diversity": self.diversity,
            "hyde": self.hyde,
            "quality": self.quality,
            "entity": self.entity,
            "think_bonus": self.think_bonus,
            "total": self.total,
            "max_possible": self.max_possible,
            "percentage": self.percentage,
            "rating": self.rating,
            "reward": self.reward,
        }

    def to_dict(self) -> dict[str, Any]:
        """Every field, tuples as lists, so it round-trips through JSON unchanged."""
        return {
            **self.sub_scores(),
            "lex": list(self.lex),
            "vec": list(self.vec),
            "hyde_lines": list(self.hyde_lines),
            "deductions": list(self.deductions),
            "entities": list(self.entities),
            "only_mode": self.only_mode,
            "used_thinking": self.used_thinking,
        }


def _rating(percentage: float) -> str:
    """Excellent >= 80, Good >= 60, Acceptable >= 40, Poor >= 20, else Failed."""
    for threshold, name in _RATINGS:
        if percentage >= threshold:
            return name
    return "Failed"


def _failure(reason: str, only_mode: str | None, used_thinking: bool) -> ScoreResult:
    """The all-zero result (out of 100) for output that cannot be used at all."""
    return ScoreResult(
        format=0,
        diversity=0,
        hyde=0,
        quality=0,
        entity=0,
        think_bonus=0,
        total=0,
        max_possible=FAILURE_MAX_POSSIBLE,
        percentage=0.0,
        rating="Failed",
        reward=0.0,
        lex=(),
        vec=(),
        hyde_lines=(),
        deductions=(reason,),
        entities=(),
        only_mode=only_mode,
        used_thinking=used_thinking,
    )


def _result(
    scores: tuple[int, int, int, int, int, int],
    max_possible: int,
    parsed: tuple[list[str], list[str], list[str]],
    deductions: list[str],
    entities: list[str],
    only_mode: str | None,
    used_thinking: bool,
) -> ScoreResult:
    """Assemble a result from the six raw sub-scores; entity and total are floored at 0."""
    fmt, div, hyde, quality, entity, think = scores
    raw_total = fmt + div + hyde + quality + entity + think
    # The rating follows the percentage as shown, so "80.0" always reads Excellent.
    shown = round(min(100.0, max(0.0, raw_total / max_possible * 100)), 1)
    total = max(0, raw_total)
    lex, vec, hyde_lines = parsed
    return ScoreResult(
        format=fmt,
        diversity=div,
        hyde=hyde,
        quality=quality,
        entity=max(0, entity),
        think_bonus=think,
        total=total,
        max_possible=max_possible,
        percentage=shown,
        rating=_rating(shown),
        reward=min(1.0, max(0.0, total / max_possible)),
        lex=tuple(lex),
        vec=tuple(vec),
        hyde_lines=tuple(hyde_lines),
        deductions=tuple(deductions),
        entities=tuple(entities),
        only_mode=only_mode,
        used_thinking=used_thinking,
    )


def _score_full(
    query: str, lex: list[str], vec: list[str], hyde_lines: list[str], used_thinking: bool
) -> ScoreResult:
    """Score a normal (all types wanted) expansion: rule 4 of the spec."""
    deductions: list[str] = []
    # parse() already trimmed every line, so lower-casing once serves every check below.
    lex_low = [line.lower() for line in lex]
    vec_low = [line.lower() for line in vec]

    fmt = 10
    if lex:
        fmt += 10
    else:
        deductions.append("no lex lines")
    if vec:
        fmt += 10
    else:
        deductions.append("no vec lines")

    div = 0
    if lex and vec:
        div += 10
    if len(lex) + len(vec) >= 2:
        div += 5
    else:
        deductions.append("fewer than 2 lex/vec lines")
    lex_dupes = non_diverse_pairs(lex_low, 2)
    vec_dupes = non_diverse_pairs(vec_low, 3)
    echoed = echo_count(lex_low + vec_low, query)
    div += max(0, 5 - 2 * lex_dupes) + max(0, 5 - 2 * vec_dupes) + max(0, 5 - 3 * echoed)
    if lex_dupes:
        deductions.append(f"{lex_dupes} near-duplicate lex pair(s)")
    if vec_dupes:
        deductions.append(f"{vec_dupes} near-duplicate vec pair(s)")
    if echoed:
        deductions.append(f"{echoed} line(s) echo the query")

    hyde = 0
    if hyde_lines:
        first = hyde_lines[0]
        hyde = 5
        if 50 <= len(first) <= 200:
            hyde += 5
        elif len(first) < 50:
            hyde += 2
            deductions.append("hyde too short")
        else:
            deductions.append("hyde too long")
        if "\n" not in first:
            hyde += 5
        penalty = repetition_penalty(first)
        hyde += max(0, 5 - penalty)
        if penalty:
            deductions.append(f"hyde repetition penalty {penalty}")

    quality = 5
    if lex and vec:
        if sum(map(len, lex)) / len(lex) <= sum(map(len, vec)) / len(vec):
            quality += 5
        else:
            deductions.append("lex lines longer than vec lines on average")
    if vec:
        if all(" " in v and len(v) > 15 for v in vec):
            quality += 5
        else:
            quality += 2
            deductions.append("vec line not natural language")
    if lex:
        terms = key_terms(query)
        kept = sum(1 for line in lex_low if keeps_key_terms(line, terms))
        if kept == len(lex):
            quality += 5
        elif kept:
            quality += 2
            deductions.append("some lex lines drop the query's key terms")
        else:
            deductions.append("no lex line keeps the query's key terms")

    entities = extract_entities(query)
    if not entities:
        entity = 10
    elif not lex:
        entity = 0
    else:
        kept = sum(1 for line in lex_low if keeps_entity(line, entities))
        if kept == len(lex):
            entity = 15
        elif kept:
            entity = 5
            deductions.append("some lex lines drop the query's entities")
        else:
            entity = -30
            deductions.append("no lex line keeps the query's entities")
        generic = sum(1 for line in lex_low if is_generic(line))
        if generic:
            entity -= 15 * generic
            deductions.append(f"{generic} generic lex line(s)")
        if any(keeps_entity(line, entities) for line in vec_low):
            entity += 5

    think = 0 if used_thinking else 20
    if used_thinking:
        deductions.append("used thinking")
    max_possible = FULL_MAX_POSSIBLE_WITH_HYDE if hyde_lines else FULL_MAX_POSSIBLE
    return _result(
        (fmt, div, hyde, quality, entity, think),
        max_possible,
        (lex, vec, hyde_lines),
        deductions,
        entities,
        None,
        used_thinking,
    )


def _score_only(
    only: str,
    base: str,
    parsed: dict[str, list[str]],
    used_thinking: bool,
) -> ScoreResult:
    """Score an `/only:TYPE` expansion: rule 5 of the spec."""
    lines = parsed[only]
    if not lines:
        return _failure(f"no {only} lines for /only:{only}", only, used_thinking)
    deductions: list[str] = []
    lows = [line.lower() for line in lines]

    unwanted = sum(len(parsed[t]) for t in ONLY_TYPES if t != only)
    fmt = max(0, 30 - 10 * unwanted)
    if unwanted:
        deductions.append(f"{unwanted} line(s) of unwanted types")

    if len(lines) >= 2:
        dupes = non_diverse_pairs(lows, 2)
        div = 15 + max(0, 15 - 5 * dupes)
        if dupes:
            deductions.append(f"{dupes} near-duplicate {only} pair(s)")
    else:
        div = 15
    echoed = echo_count(lows, base)
    if echoed:
        div = max(0, div - 5 * echoed)
        deductions.append(f"{echoed} line(s) echo the query")

    quality = 10
    if only == "lex":
        terms = key_terms(base)
        if all(keeps_key_terms(line, terms) for line in lows):
            quality += 5
        else:
            deductions.append("lex line drops the query's key terms")
        if any(is_generic(line) for line in lows):
            deductions.append("generic lex line")
        else:
            quality += 5
    elif only == "vec":
        if all(" " in v and len(v) > 15 for v in lines):
            quality += 10
        else:
            quality += 5
            deductions.append("vec line not natural language")
    else:
        length = len(lines[0])
        if 50 <= length <= 200:
            quality += 10
        elif 30 <= length <= 300:
            quality += 5
            deductions.append("hyde length outside 50..200")
        else:
            deductions.append("hyde length outside 30..300")

    entities = extract_entities(base)
    entity = 10
    if entities:
        kept = sum(1 for line in lows if keeps_entity(line, entities))
        if kept == len(lines):
            entity = 20
        elif kept:
            entity = 15
            deductions.append(f"some {only} lines drop the query's entities")
        else:
            entity = 0
            deductions.append(f"no {only} line keeps the query's entities")

    think = 0 if used_thinking else 20
    if used_thinking:
        deductions.append("used thinking")
    return _result(
        (fmt, div, 0, quality, entity, think),
        ONLY_MAX_POSSIBLE,
        (parsed["lex"], parsed["vec"], parsed["hyde"]),
        deductions,
        entities,
        only,
        used_thinking,
    )


def score(query: str, completion: str) -> ScoreResult:
    """Score one completion for one query with rubric v1."""
    text, used_thinking = clean(completion.strip())
    only, base = parse_only_mode(query)
    if leaks(text):
        return _failure("chat template leakage", only, used_thinking)
    lex, vec, hyde_lines, invalid = parse(text)
    if invalid:
        return _failure(f"invalid line: {invalid[0][:60]!r}", only, used_thinking)
    if only is not None:
        return _score_only(only, base, {"lex": lex, "vec": vec, "hyde": hyde_lines}, used_thinking)
    return _score_full(query, lex, vec, hyde_lines, used_thinking)


def reward(query: str, completion: str) -> float:
    """The RL reward: reported total / max_possible, in 0..1."""
    return score(query, completion).reward
