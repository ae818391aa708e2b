"""The rubric's checks: entities, key terms, generic lines, diversity, echoes, repetition.

Each is one of the helpers `shared/spec/scoring.md` defines, on one line or one query.

The scorer calls the plural helpers (`non_diverse_pairs`, `echo_count`) on lines it has
lower-cased and trimmed once; the one-pair forms (`diverse`, `echoes`) are the spec's
definitions, kept for callers and tests that ask about a single pair.
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import combinations

from qmd_ft.rubric.words import GENERIC_WORDS, KEY_STOPWORDS, REPEAT_STOPWORDS

# The spec's `\b\w+\b` words longer than 2 characters: a maximal run of \w is either matched
# whole or, when shorter than 3, not at all; only those words can add a repetition penalty.
# On ASCII text \w is [A-Za-z0-9_] either way, and the ASCII matcher is about 25% faster.
_LONG_WORD = re.compile(r"\w{3,}")
_LONG_WORD_ASCII = re.compile(r"\w{3,}", re.ASCII)
_ENTITY_STRIP = ".,!?:;()[]\"'"
_ENTITY_MARKS = frozenset(".+-#@")


def _entity_list(query: str) -> list[str]:
    """Entities in query order, duplicates kept (rules 1-5 of the spec, first match wins)."""
    found: list[str] = []
    prev_entity = False
    for i, raw in enumerate(query.split()):
        word = raw.strip(_ENTITY_STRIP)
        if not word:
            prev_entity = False
            continue
        lower = word.lower()
        first_upper = word[0].isupper()
        is_entity = (
            (word.isupper() and len(word) >= 2)
            or (i > 0 and first_upper and lower not in KEY_STOPWORDS)
            or (len(word) >= 2 and not _ENTITY_MARKS.isdisjoint(word))
            or (len(word) > 1 and first_upper and any(c.isupper() for c in word[1:]))
            or (prev_entity and lower not in KEY_STOPWORDS)
        )
        if is_entity:
            found.append(lower)
        prev_entity = is_entity
    return found


def extract_entities(query: str) -> list[str]:
    """The query's entities, lower-cased, as a sorted set.

    Scoring only asks whether some entity occurs in a line, so order and repeats carry no
    weight; sorted unique is the form the reference results publish.
    """
    if query.islower() and _ENTITY_MARKS.isdisjoint(query):
        # No upper-case character rules out 1, 2 and 4, no mark rules out 3, and rule 5
        # needs an earlier entity: most queries are decided without the word walk.
        return []
    return sorted(set(_entity_list(query)))


def key_terms(query: str) -> frozenset[str]:
    """The query's lower-cased words that are not KEY_STOPWORDS."""
    return frozenset(query.lower().split()) - KEY_STOPWORDS


def keeps_key_terms(line: str, terms: frozenset[str]) -> bool:
    """True when the line has a key term (see key_terms) as a whole word, or there are none.

    Takes the query's key terms rather than the query so they are computed once per score.
    """
    return not terms or not terms.isdisjoint(line.lower().split())


def keeps_entity(line: str, entities: list[str] | tuple[str, ...]) -> bool:
    """True when some entity occurs in the line, even inside a longer word, or there are none."""
    if not entities:
        return True
    lower = line.lower()
    return any(e in lower for e in entities)


def is_generic(line: str) -> bool:
    """True when a line is little more than a filler phrase ("search for", "how to" ...)."""
    lower = line.lower().strip()
    for phrase, words in GENERIC_WORDS:
        if phrase in lower or lower.startswith(words[0]):
            rest = lower
            for word in words:
                rest = rest.replace(word, "", 1).strip()
            if len(rest) < 3:
                return True
    return False


def diverse(a: str, b: str, d: int) -> bool:
    """True when two lines differ: not equal, neither inside the other, >= d distinct words.

    Distinct words are the symmetric difference of the two lower-cased word sets.
    """
    return non_diverse_pairs([a.lower().strip(), b.lower().strip()], d) == 0


def echoes(expansion: str, query: str) -> bool:
    """True when an expansion is the query again, or the query plus under 10 characters."""
    return echo_count([expansion.lower().strip()], query) == 1


def repetition_penalty(text: str) -> int:
    """2 points per repeat beyond the second of each content word longer than 2 characters."""
    low = text.lower()
    words = (_LONG_WORD_ASCII if low.isascii() else _LONG_WORD).findall(low)
    counts = Counter(words)
    if len(counts) > len(words) - 2:
        return 0  # fewer than two repeats in all: no word can occur 3 times
    return sum((n - 2) * 2 for word, n in counts.items() if n >= 3 and word not in REPEAT_STOPWORDS)


def non_diverse_pairs(lows: list[str], d: int) -> int:
    """How many pairs of (lower-cased, trimmed) lines are not diverse at d.

    Each line's word set is built once, not once per pair it is in.
    """
    if len(lows) < 2:
        return 0
    keyed = [(low, set(low.split())) for low in lows]
    return sum(
        1
        for (a, wa), (b, wb) in combinations(keyed, 2)
        if a == b or a in b or b in a or len(wa ^ wb) < d
    )


def echo_count(lows: list[str], query: str) -> int:
    """How many (lower-cased, trimmed) lines echo the query."""
    q = query.lower().strip()
    limit = len(q) + 10
    return sum(1 for e in lows if e == q or (q in e and len(e) < limit))
