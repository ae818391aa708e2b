"""The QMD query-expansion scoring rubric (v1): GRPO reward and evaluation score in one place.

The release gate compares a new model's score with the deployed model's published score, so
this module must reproduce `shared/spec/scoring.md` to the point: "almost the same rubric" is
a different rubric. It is pure standard-library Python (importable from the CLI, TRL and MLX
code alike, with no torch or mlx), deterministic, and fast enough to score every GRPO rollout
inline: regexes are compiled and vocabularies frozen once, at import time.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from typing import Any

RUBRIC_VERSION = "v1"


def _words(text: str) -> frozenset[str]:
    # The vocabularies are written as in the spec, one space-separated line each, so they
    # can be checked against it by eye.
    return frozenset(text.split())


REPEAT_STOPWORDS = _words("the a an is are to for of in and or it this that be with as on by")
KEY_STOPWORDS = _words(
    "what is how to the a an in on for of and or with my your do does can i me we "
    "who where when why which find get show tell"
)
GENERIC_PHRASES = (
    "find information about",
    "search for",
    "look up",
    "get information",
    "learn about",
    "information on",
    "details about",
    "find out about",
    "what is",
    "how to",
    "guide to",
    "help with",
)
# Each phrase with its words split once: is_generic runs per lex line, per rollout.
_GENERIC_WORDS = tuple((phrase, tuple(phrase.split())) for phrase in GENERIC_PHRASES)
_SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
LEAK_MARKERS = (*_SPECIAL_TOKENS, "\nassistant\n", "\nuser\n")
ONLY_TYPES = ("lex", "vec", "hyde")

_IM_END = "<|im_end|>"
_INSTRUCTION = "Expand this search query:"
_THINK_SPAN = re.compile(r"<think>.*?</think>", re.DOTALL)
_ONLY_MODE = re.compile(r"\s/only:(lex|vec|hyde)\s*\Z", re.IGNORECASE)
# The spec's `\b\w+\b` words longer than 2 characters: a maximal run of \w is either matched
# whole or, when shorter than 3, not at all; only those words can add a repetition penalty.
# On ASCII text \w is [A-Za-z0-9_] either way, and the ASCII matcher is about 25% faster.
_LONG_WORD = re.compile(r"\w{3,}")
_LONG_WORD_ASCII = re.compile(r"\w{3,}", re.ASCII)
_ENTITY_STRIP = ".,!?:;()[]\"'"
_ENTITY_MARKS = frozenset(".+-#@")

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


# ---------------------------------------------------------------------------- helpers


def parse(text: str) -> tuple[list[str], list[str], list[str], list[str]]:
    """Split output text into its (lex, vec, hyde, invalid) lines, prefixes removed."""
    lex: list[str] = []
    vec: list[str] = []
    hyde: list[str] = []
    invalid: list[str] = []
    for raw in text.strip().split("\n"):
        line = raw.strip()
        if not line:
            continue
        head = line[:4]  # one slice compared twice beats two startswith calls
        if head == "lex:":
            lex.append(line[4:].strip())
        elif head == "vec:":
            vec.append(line[4:].strip())
        elif line.startswith("hyde:"):
            hyde.append(line[5:].strip())
        else:
            invalid.append(line)
    return lex, vec, hyde, invalid


def clean(completion: str) -> tuple[str, bool]:
    """Drop `<|im_end|>` and think blocks; return (text, used_thinking).

    Thinking is only "used" when a block both opens and closes; a lone tag stays in the text.
    """
    text = completion.replace(_IM_END, "").strip()
    used_thinking = "<think>" in text and "</think>" in text
    if used_thinking:
        text = _THINK_SPAN.sub("", text).strip()
    return text, used_thinking


def parse_only_mode(query: str) -> tuple[str | None, str]:
    """Return (type, base query) for `... /only:lex|vec|hyde`, else (None, query trimmed).

    The slash and the whitespace before it are required, so "x only: lex" is an ordinary query.
    """
    m = _ONLY_MODE.search(query)
    if m is None:
        return None, query.strip()
    return m.group(1).lower(), query[: m.start()].strip()


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
    for phrase, words in _GENERIC_WORDS:
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
    return _non_diverse_pairs([a.lower().strip(), b.lower().strip()], d) == 0


def echoes(expansion: str, query: str) -> bool:
    """True when an expansion is the query again, or the query plus under 10 characters."""
    return _echo_count([expansion.lower().strip()], query) == 1


def repetition_penalty(text: str) -> int:
    """2 points per repeat beyond the second of each content word longer than 2 characters."""
    low = text.lower()
    words = (_LONG_WORD_ASCII if low.isascii() else _LONG_WORD).findall(low)
    counts = Counter(words)
    if len(counts) > len(words) - 2:
        return 0  # fewer than two repeats in all: no word can occur 3 times
    return sum((n - 2) * 2 for word, n in counts.items() if n >= 3 and word not in REPEAT_STOPWORDS)


def _non_diverse_pairs(lows: list[str], d: int) -> int:
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


def _echo_count(lows: list[str], query: str) -> int:
    """How many (lower-cased, trimmed) lines echo the query."""
    q = query.lower().strip()
    limit = len(q) + 10
    return sum(1 for e in lows if e == q or (q in e and len(e) < limit))


def _leaks(text: str) -> bool:
    """True when text holds a LEAK_MARKER (the three special tokens all start with "<|")."""
    return (
        ("<|" in text and any(marker in text for marker in _SPECIAL_TOKENS))
        or "\nassistant\n" in text
        or "\nuser\n" in text
    )


def _rating(percentage: float) -> str:
    """Excellent >= 80, Good >= 60, Acceptable >= 40, Poor >= 20, else Failed."""
    for threshold, name in _RATINGS:
        if percentage >= threshold:
            return name
    return "Failed"


# ---------------------------------------------------------------------------- scoring


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
    lex_dupes = _non_diverse_pairs(lex_low, 2)
    vec_dupes = _non_diverse_pairs(vec_low, 3)
    echo_count = _echo_count(lex_low + vec_low, query)
    div += max(0, 5 - 2 * lex_dupes) + max(0, 5 - 2 * vec_dupes) + max(0, 5 - 3 * echo_count)
    if lex_dupes:
        deductions.append(f"{lex_dupes} near-duplicate lex pair(s)")
    if vec_dupes:
        deductions.append(f"{vec_dupes} near-duplicate vec pair(s)")
    if echo_count:
        deductions.append(f"{echo_count} line(s) echo the query")

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
        dupes = _non_diverse_pairs(lows, 2)
        div = 15 + max(0, 15 - 5 * dupes)
        if dupes:
            deductions.append(f"{dupes} near-duplicate {only} pair(s)")
    else:
        div = 15
    echo_count = _echo_count(lows, base)
    if echo_count:
        div = max(0, div - 5 * echo_count)
        deductions.append(f"{echo_count} line(s) echo the query")

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
    if _leaks(text):
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


# ---------------------------------------------------------------------------- trainer glue


def _last_content(messages: list[dict[str, Any]], role: str) -> str:
    """Content of the last message with this role ("" if none): the turn being answered."""
    for message in reversed(messages):
        if message.get("role") == role:
            return message.get("content") or ""
    return ""


def query_from_prompt(prompt: str | list[dict[str, Any]]) -> str:
    """Recover the user's query from a rendered prompt or a chat message list.

    Trainers hand the reward the prompt, not the dataset's query column, so the query is
    read back from after the last "Expand this search query:" (up to `<|im_end|>`).
    """
    text = _last_content(prompt, "user") if isinstance(prompt, list) else prompt
    cut = text.rfind(_INSTRUCTION)
    if cut < 0:
        return text.strip()
    return text[cut + len(_INSTRUCTION) :].strip().split(_IM_END, 1)[0].strip()


def completion_text(completion: str | list[dict[str, Any]]) -> str:
    """The completion's text, from a plain string or an assistant chat message list."""
    if isinstance(completion, list):
        return _last_content(completion, "assistant")
    return completion


def qmd_reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
    """TRL GRPOTrainer reward function: one 0..1 reward per (prompt, completion).

    TRL also passes dataset columns and token ids as keyword arguments; they are ignored so
    the reward depends on the text alone, as it does at evaluation time.
    """
    return [
        score(query_from_prompt(p), completion_text(c)).reward
        for p, c in zip(prompts, completions, strict=True)
    ]


# ---------------------------------------------------------------------------- self-test

SELFTEST_EXAMPLES: list[tuple[str, str, str]] = [
    (
        "auth config",
        "hyde: Authentication is configured by setting the AUTH_SECRET environment variable "
        "and enabling the auth middleware in the config file.\n"
        "lex: auth config file settings\n"
        "lex: authentication middleware config secret\n"
        "vec: how do I configure authentication for my application\n"
        "vec: which settings control the auth middleware and its secrets",
        "excellent full expansion",
    ),
    (
        "docker compose volumes /only:lex",
        "lex: docker compose named volumes\nlex: compose bind mount volumes yaml",
        "only:lex expansion",
    ),
    (
        "rust lifetimes",
        "<think>\nThe user wants Rust lifetime docs.\n</think>\n"
        "lex: rust lifetimes borrow checker\n"
        "vec: how do lifetime annotations work in rust functions",
        "think block: loses the 20-point think bonus",
    ),
    (
        "python asyncio",
        "lex: python asyncio event loop\n<|im_start|>assistant\nvec: asyncio tutorial",
        "chat template leakage: failure",
    ),
    (
        "configure AWS Lambda",
        "lex: configure serverless function settings\n"
        "lex: configure function timeout memory\n"
        "vec: how do I configure memory and timeout for a serverless function",
        "drops the entities AWS and Lambda: -30",
    ),
    (
        "deploy Kubernetes ingress",
        "lex: kubernetes ingress controller\n"
        "lex: find information about\n"
        "vec: how does a kubernetes ingress route traffic to services",
        "generic lex line: -15",
    ),
]


def selftest_rows() -> list[tuple[str, str, ScoreResult]]:
    """(query, note, result) for each worked example, for `qmd-ft score --selftest`."""
    return [(q, note, score(q, completion)) for q, completion, note in SELFTEST_EXAMPLES]
