"""Rubric v1 (`qmd_ft.reward`) against the published golden cases and hand-worked examples.

The golden cases are the ground truth the release gate depends on; the hand-written cases
pin each rule of `shared/spec/scoring.md` on its own, with expected values worked out from
the spec by hand (never by calling the implementation), so a drifting rule names itself.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from qmd_ft import reward
from qmd_ft.reward import (
    ScoreResult,
    clean,
    completion_text,
    diverse,
    echoes,
    extract_entities,
    is_generic,
    keeps_entity,
    keeps_key_terms,
    key_terms,
    parse,
    parse_only_mode,
    qmd_reward,
    query_from_prompt,
    repetition_penalty,
    score,
)

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared/reward/golden_public.jsonl"
GOLDEN_KEYS = (
    "format",
    "diversity",
    "hyde",
    "quality",
    "entity",
    "think_bonus",
    "total",
    "max_possible",
    "percentage",
    "rating",
    "reward",
    "only_mode",
    "entities",
)


def _golden_cases() -> list:
    if not GOLDEN.exists():
        return [pytest.param(None, id="golden-absent")]
    rows = [json.loads(line) for line in GOLDEN.read_text().splitlines() if line.strip()]
    return [pytest.param(row, id=f"{i:03d}-{row['kind']}") for i, row in enumerate(rows)]


@pytest.mark.parametrize("case", _golden_cases())
def test_golden_case(case: dict | None) -> None:
    if case is None:
        pytest.skip(f"{GOLDEN} not present")
    got = score(case["query"], case["completion"]).to_dict()
    assert {k: got[k] for k in GOLDEN_KEYS} == {k: case[k] for k in GOLDEN_KEYS}


# ---------------------------------------------------------------------------- parse / clean


def test_parse_sorts_lines_by_prefix_and_keeps_the_rest_invalid() -> None:
    text = "\n  lex: a b \n\n vec:c\nhyde:  d e \nlex:\nfoo\nLex: x\n lex : y\n"
    lex, vec, hyde, invalid = parse(text)
    assert lex == ["a b", ""]
    assert vec == ["c"]
    assert hyde == ["d e"]
    assert invalid == ["foo", "Lex: x", "lex : y"]


def test_clean_drops_im_end_and_non_greedy_think_spans() -> None:
    text, used = clean("<think>a</think>lex: x<|im_end|>\n<think>\nb\n</think>vec: y z<|im_end|>")
    assert used is True
    assert text == "lex: x\nvec: y z"  # a greedy span would have eaten "lex: x"


def test_clean_needs_both_think_tags() -> None:
    assert clean("  <think> lex: a  ") == ("<think> lex: a", False)
    assert clean("lex: a </think>") == ("lex: a </think>", False)


# ---------------------------------------------------------------------------- only-mode


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("docker volumes /only:lex", ("lex", "docker volumes")),
        ("docker volumes /ONLY:Vec  ", ("vec", "docker volumes")),
        ("  docker   volumes\t/only:HYDE", ("hyde", "docker   volumes")),
        ("a /only:lex /only:vec", ("vec", "a /only:lex")),
        ("x only: lex", (None, "x only: lex")),
        ("x /only: lex", (None, "x /only: lex")),
        ("x/only:lex", (None, "x/only:lex")),
        ("x /only:lexx", (None, "x /only:lexx")),
        ("x /only:lex.", (None, "x /only:lex.")),
    ],
)
def test_parse_only_mode(query: str, expected: tuple[str | None, str]) -> None:
    assert parse_only_mode(query) == expected


def test_no_slash_only_is_an_ordinary_query() -> None:
    r = score("JWT refresh only: lex", "lex: jwt refresh token rotation")
    assert r.only_mode is None
    assert r.format == 20  # full-mode format (lex, no vec), not only-mode's 30
    assert r.max_possible == 120


def test_upper_case_only_type_is_lower_cased() -> None:
    r = score("docker volumes /ONLY:LEX", "lex: docker named volumes")
    assert r.only_mode == "lex"
    assert r.max_possible == 120


# ---------------------------------------------------------------------------- entities


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # rule 1: all cased characters upper, length >= 2, any position
        ("AWS is cheap", ["aws"]),
        ("C++ is fast", ["c++"]),
        ("A b", []),  # too short for rule 1, first word for rule 2
        # rule 2: later word starting upper case, not a key stopword
        ("learn Python now", ["now", "python"]),  # "now" by rule 5
        ("Python is great", []),  # first word: rule 2 needs i > 0
        ("tell Me", []),  # "me" is a key stopword
        # rule 3: contains . + - # @ with length >= 2
        ("install node.js", ["node.js"]),
        ("c# is hard", ["c#"]),
        ("x - y", []),  # a lone "-" is too short
        # rule 4: upper first character and a later upper character
        ("JavaScript is fun", ["javascript"]),
        ("buy iPhone", []),  # lower first character: none of 1-4
        # rule 5: follows an entity, not a key stopword
        ("TDS motorsports", ["motorsports", "tds"]),
        ("AWS the best", ["aws"]),  # "the" breaks the run, so "best" is no entity
        # punctuation stripped; an empty word resets the run
        ('about "Docker"?', ["docker"]),
        ("AWS ... lambda", ["aws"]),
        ("AWS lambda", ["aws", "lambda"]),
        # lower-cased, unique, sorted
        ("use AWS or AWS", ["aws"]),
        ("how to cook rice", []),
    ],
)
def test_extract_entities(query: str, expected: list[str]) -> None:
    assert extract_entities(query) == expected


# ---------------------------------------------------------------------------- line helpers


def test_key_terms_and_keeps_key_terms() -> None:
    terms = key_terms("How to use the Git CLI")
    assert terms == {"use", "git", "cli"}
    assert keeps_key_terms("Git tips", terms)
    assert not keeps_key_terms("github tips", terms)  # whole words only
    assert not keeps_key_terms("anything", key_terms("how to do it"))  # "it" is a key term
    assert keeps_key_terms("anything", key_terms("how to"))  # no key terms at all


def test_keeps_entity_is_a_substring_test() -> None:
    assert keeps_entity("GitHub tips", ["git"])
    assert not keeps_entity("amazon hosting", ["aws"])
    assert keeps_entity("anything", [])


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("find information about", True),
        ("Search for X", True),  # "x" is left: under 3 characters
        ("details about it", True),
        ("lookup", True),  # starts with "look"; removing "look" then "up" leaves nothing
        ("whatis", True),
        ("search for docker", False),  # "docker" is left
        ("how do i", False),  # starts with "how", but "do i" is left
        ("kubernetes ingress", False),
    ],
)
def test_is_generic(line: str, expected: bool) -> None:
    assert is_generic(line) is expected


def test_diverse() -> None:
    assert not diverse("a b c", "A B C", 2)  # equal once lower-cased
    assert not diverse("Docker compose", "docker compose volumes", 2)  # substring
    assert diverse("docker volumes", "docker networks", 2)  # 2 distinct words
    assert not diverse("docker volumes", "docker networks", 3)


def test_echoes() -> None:
    assert echoes(" Docker Compose ", "docker compose")
    assert echoes("docker compose tips", "docker compose")  # 19 < 14 + 10
    assert not echoes("docker compose volumes guide", "docker compose")  # 28 >= 24
    assert not echoes("compose", "docker compose")
    assert echoes("docker compose 12345678", "docker compose")  # 23 < 24
    assert not echoes("docker compose 123456789", "docker compose")  # 24 is not < 24


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cat cat cat dog", 2),
        ("Cats cats CATS cats", 4),
        ("run run; run. run! run", 6),
        ("the the the the", 0),  # repeat stopword
        ("ab ab ab ab", 0),  # too short
        ("café café café", 2),
        ("one two three", 0),
    ],
)
def test_repetition_penalty(text: str, expected: int) -> None:
    assert repetition_penalty(text) == expected


# ---------------------------------------------------------------------------- full mode

FULL_QUERY = "docker networking"
FULL_HYDE = (
    "Docker networking connects containers through bridge, host and overlay drivers "
    "so services can reach each other."
)
FULL = (
    f"hyde: {FULL_HYDE}\n"
    "lex: docker network bridge\n"
    "lex: container overlay networking\n"
    "vec: how do docker containers communicate over networks\n"
    "vec: what network drivers does docker provide for containers"
)


def test_full_expansion_worked_example() -> None:
    assert 50 <= len(FULL_HYDE) <= 200
    r = score(FULL_QUERY, FULL)
    # format 10+10+10; diversity 10+5+5+5+5; hyde 5+5+5+5; quality 5+5+5+5; no entities 10
    assert (r.format, r.diversity, r.hyde, r.quality, r.entity, r.think_bonus) == (
        30,
        30,
        20,
        20,
        10,
        20,
    )
    assert (r.total, r.max_possible, r.percentage, r.rating) == (130, 140, 92.9, "Excellent")
    assert r.reward == 130 / 140
    assert r.lex == ("docker network bridge", "container overlay networking")
    assert len(r.vec) == 2
    assert r.hyde_lines == (FULL_HYDE,)
    assert r.deductions == ()
    assert r.only_mode is None
    assert r.used_thinking is False


def test_lex_only_expansion_worked_example() -> None:
    r = score("redis eviction", "lex: redis eviction policy\nlex: redis maxmemory lru")
    # format 10+10; diversity 0+5+5+5 + (5-3: "redis eviction policy" echoes, 21 < 24)
    assert (r.format, r.diversity, r.hyde, r.quality, r.entity) == (20, 17, 0, 10, 10)
    assert (r.total, r.max_possible, r.percentage, r.rating) == (77, 120, 64.2, "Good")


def test_only_the_first_hyde_line_counts() -> None:
    short = "A short passage."  # 16 characters: 5 + 2 + 5 + 5
    r = score("q", f"hyde: {short}\nhyde: {'x' * 120}\nlex: a b\nvec: c d e f g h i j k")
    assert r.hyde == 17
    assert r.max_possible == 140
    assert len(r.hyde_lines) == 2


@pytest.mark.parametrize(
    ("length", "expected"),
    [(49, 5 + 2 + 5 + 5), (50, 20), (200, 20), (201, 5 + 0 + 5 + 5)],
)
def test_hyde_length(length: int, expected: int) -> None:
    assert score("q", "hyde: " + "a" * length).hyde == expected


def test_hyde_repetition_penalty() -> None:
    assert score("q", "hyde: cats cats cats cats and dogs").hyde == 5 + 2 + 5 + (5 - 4)
    assert score("q", "hyde: cat cat cat cat cat").hyde == 5 + 2 + 5 + 0


def test_diversity_pairs_and_echoes() -> None:
    # three identical lex lines: 3 pairs, 5 - 6 -> 0
    r = score("memcached alternatives", "lex: redis cache\n" * 3 + "vec: an in memory cache")
    assert r.diversity == 10 + 5 + 0 + 5 + 5
    # two lines differing by two words: diverse as lex (d=2), not as vec (d=3)
    a = "how does redis caching work"
    b = "how does redis eviction work"
    assert score("memcached", f"lex: {a}\nlex: {b}\nvec: {a}").diversity == 10 + 5 + 5 + 5 + 5
    assert score("memcached", f"lex: x y\nvec: {a}\nvec: {b}").diversity == 10 + 5 + 5 + 3 + 5
    # two echoing lines: 5 - 6 -> 0
    assert score("tide pools", "lex: tide pools\nvec: Tide Pools").diversity == 10 + 5 + 5 + 5 + 0


def test_fewer_than_two_lines_loses_the_count_bonus() -> None:
    assert score("q", "vec: what is the question here").diversity == 0 + 0 + 5 + 5 + 5


def test_quality_rules() -> None:
    # lex longer than vec on average; vec not natural language; one of two lex keeps a key term
    r = score(
        "rust borrow checker",
        "lex: rust ownership borrowing lifetimes explained\n"
        "lex: memory safety model\n"
        "vec: borrowck",
    )
    assert r.quality == 5 + 0 + 2 + 2
    # no lex keeps a key term
    assert score("rust borrow checker", "lex: memory safety").quality == 5 + 0
    # every line in shape
    r = score("rust borrow checker", "lex: rust borrow\nvec: how does the rust borrow checker work")
    assert r.quality == 5 + 5 + 5 + 5


def test_entity_rules_full_mode() -> None:
    q = "deploy Kubernetes ingress"  # entities: kubernetes (rule 2), ingress (rule 5)
    vec = "vec: how does a kubernetes ingress route traffic"
    assert score(q, f"lex: kubernetes ingress nginx\n{vec}").entity == 15 + 5
    assert score(q, "lex: kubernetes ingress nginx\nvec: how is traffic routed").entity == 15
    assert score(q, f"lex: kubernetes ingress\nlex: traffic routing rules\n{vec}").entity == 5 + 5
    # none kept: -30, plus a generic line: -15, plus vec +5 -> -40 (reported 0)
    r = score(q, f"lex: traffic routing rules\nlex: find information about\n{vec}")
    assert r.entity == 0
    # the raw -40 still counts in the total: 30 + 30 + 0 + (5 + 5 + 5 + 0) - 40 + 20
    assert r.total == 55
    assert r.total != sum((r.format, r.diversity, r.hyde, r.quality, r.entity, r.think_bonus))
    assert score(q, vec).entity == 0  # entities but no lex
    assert score("plain query", "lex: find information about").entity == 10  # no entities


def test_negative_total_is_clamped_to_zero() -> None:
    completion = "<think>x</think>\nlex: find information about\nlex: search for\nlex: look up"
    r = score("use AWS", completion)
    # 20 + (0+5+5+5+5) + 0 + (5+0) + (-30 - 45) + 0 = -30
    assert (r.format, r.diversity, r.quality, r.think_bonus) == (20, 20, 5, 0)
    assert (r.entity, r.total, r.percentage, r.rating, r.reward) == (0, 0, 0.0, "Failed", 0.0)
    assert r.used_thinking is True


def test_think_block_costs_the_bonus() -> None:
    r = score(FULL_QUERY, "<think>\nplan\n</think>\n" + FULL)
    assert r.think_bonus == 0
    assert r.total == 110


# ---------------------------------------------------------------------------- failures


def _assert_failure(r: ScoreResult, reason: str) -> None:
    assert r.sub_scores() == {
        "format": 0,
        "diversity": 0,
        "hyde": 0,
        "quality": 0,
        "entity": 0,
        "think_bonus": 0,
        "total": 0,
        "max_possible": 100,
        "percentage": 0.0,
        "rating": "Failed",
        "reward": 0.0,
    }
    assert r.deductions[0].startswith(reason)
    assert r.entities == ()


@pytest.mark.parametrize(
    "completion",
    [
        "lex: a b\n<|im_start|>assistant\nvec: c d",
        "lex: a b<|endoftext|>",
        "lex: a b\nassistant\nvec: c d",
        "lex: a b\nuser\nvec: c d",
    ],
)
def test_leak_markers_fail(completion: str) -> None:
    _assert_failure(score("AWS", completion), "chat template leakage")


def test_im_end_is_cleaned_not_a_leak() -> None:
    r = score(FULL_QUERY, FULL.replace("\n", "<|im_end|>\n", 1) + "<|im_end|>")
    assert r.total == 130


def test_trailing_role_word_is_an_invalid_line_not_a_leak() -> None:
    _assert_failure(score("q", "lex: a b\nassistant"), "invalid line")


@pytest.mark.parametrize("completion", ["lex: a\nHere you go:", "Lex: a", " lex : a", "<think>"])
def test_invalid_line_fails(completion: str) -> None:
    _assert_failure(score("q", completion), "invalid line")


def test_empty_completion_is_scored_not_failed() -> None:
    r = score("q", "")
    # format 10; diversity 0+0+5+5+5; quality 5; entity 10 (none); think 20
    assert (r.total, r.max_possible, r.percentage, r.rating) == (60, 120, 50.0, "Acceptable")


# ---------------------------------------------------------------------------- only-mode


def test_only_lex_with_an_unwanted_line() -> None:
    r = score(
        "docker volumes /only:lex",
        "lex: docker named volumes\nlex: docker bind mounts\nvec: how do docker volumes work",
    )
    # format 30-10; diversity 15+15; quality 10+5+5; entity 10; think 20
    assert (r.format, r.diversity, r.hyde, r.quality, r.entity, r.think_bonus) == (
        20,
        30,
        0,
        20,
        10,
        20,
    )
    assert (r.total, r.max_possible, r.percentage, r.rating) == (100, 120, 83.3, "Excellent")
    assert r.only_mode == "lex"


def test_only_lex_quality_and_format_floor() -> None:
    r = score(
        "docker volumes /only:lex",
        "lex: search for\nvec: a b\nvec: c d\nhyde: e\nhyde: f",
    )
    assert r.format == 0  # 30 - 40, floored
    assert r.quality == 10 + 0 + 0  # no key term kept, a generic line


def test_only_vec_echo_and_short_line() -> None:
    r = score(
        "tide pools /only:vec",
        "vec: what lives in tide pools along rocky coasts\nvec: tide pools",
    )
    # diversity: 15 + (15 - 5: the pair is a substring) - 5 (one echo); quality 10 + 5
    assert (r.format, r.diversity, r.quality, r.entity) == (30, 20, 15, 10)
    assert (r.total, r.percentage, r.rating) == (95, 79.2, "Good")


def test_only_mode_diversity_floors_at_zero() -> None:
    r = score("x y /only:lex", "lex: x y\n" * 4)
    assert r.diversity == 0  # 15 + max(0, 15 - 30) - 5 * 4


@pytest.mark.parametrize(
    ("length", "quality"),
    [(20, 10), (30, 15), (49, 15), (50, 20), (200, 20), (201, 15), (300, 15), (301, 10)],
)
def test_only_hyde_length_tiers(length: int, quality: int) -> None:
    r = score("tea history /only:hyde", "hyde: " + "a" * length)
    assert r.quality == quality
    assert (r.format, r.diversity, r.hyde) == (30, 15, 0)


def test_only_mode_entities_use_the_base_query() -> None:
    q = "deploy Kubernetes /only:lex"
    assert score(q, "lex: kubernetes deploy\nlex: kubernetes rollout").entity == 20
    r = score(q, "lex: kubernetes deploy\nlex: helm chart deploy")
    assert (r.entity, r.entities) == (15, ("kubernetes",))
    assert score(q, "lex: helm deploy").entity == 0


def test_only_mode_without_its_type_fails() -> None:
    r = score("tide pools /only:vec", "lex: tide pools rocky shore")
    _assert_failure(r, "no vec lines")
    assert r.only_mode == "vec"


def test_only_mode_think_costs_the_bonus() -> None:
    r = score("tide pools /only:vec", "<think>x</think>vec: what lives in rocky tide pools")
    assert (r.think_bonus, r.total) == (0, 30 + 15 + 20 + 10)


# ---------------------------------------------------------------------------- rating


@pytest.mark.parametrize(
    ("percentage", "rating"),
    [
        (100.0, "Excellent"),
        (80.0, "Excellent"),
        (79.9, "Good"),
        (60.0, "Good"),
        (59.9, "Acceptable"),
        (40.0, "Acceptable"),
        (39.9, "Poor"),
        (20.0, "Poor"),
        (19.9, "Failed"),
        (0.0, "Failed"),
    ],
)
def test_rating_thresholds(percentage: float, rating: str) -> None:
    assert reward._rating(percentage) == rating


# ---------------------------------------------------------------------------- trainer glue

PROMPT = (
    "<|im_start|>user\n/no_think Expand this search query: docker networking<|im_end|>\n"
    "<|im_start|>assistant\n"
)


def test_query_from_prompt_string() -> None:
    assert query_from_prompt(PROMPT) == "docker networking"
    twice = "Expand this search query: a\nExpand this search query:  b c "
    assert query_from_prompt(twice) == "b c"  # the last occurrence
    assert query_from_prompt("  plain query \n") == "plain query"


def test_query_from_prompt_chat() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "/no_think Expand this search query: first"},
        {"role": "assistant", "content": "lex: first"},
        {"role": "user", "content": "/no_think Expand this search query: docker networking"},
    ]
    assert query_from_prompt(messages) == "docker networking"


def test_completion_text() -> None:
    assert completion_text("lex: a") == "lex: a"
    assert completion_text([{"role": "assistant", "content": "lex: a"}]) == "lex: a"


def test_qmd_reward_on_strings_and_chat_lists() -> None:
    leak = "lex: a\n<|im_start|>user"
    assert qmd_reward([PROMPT, PROMPT], [FULL, leak]) == [130 / 140, 0.0]
    user = "/no_think Expand this search query: docker networking"
    chat_prompt = [{"role": "user", "content": user}]
    chat = qmd_reward(
        [chat_prompt, chat_prompt],
        [[{"role": "assistant", "content": FULL}], [{"role": "assistant", "content": leak}]],
        completion_ids=[[1], [2]],
        trainer_state=None,
    )
    assert chat == [130 / 140, 0.0]
    assert qmd_reward.__name__ == "qmd_reward"


def test_qmd_reward_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        qmd_reward([PROMPT], [FULL, FULL])


# ---------------------------------------------------------------------------- API shape


def test_result_api() -> None:
    r = score(FULL_QUERY, FULL)
    assert reward.RUBRIC_VERSION == "v1"
    assert list(r.sub_scores()) == [
        "format",
        "diversity",
        "hyde",
        "quality",
        "entity",
        "think_bonus",
        "total",
        "max_possible",
        "percentage",
        "rating",
        "reward",
    ]
    d = r.to_dict()
    assert {f.name for f in dataclasses.fields(ScoreResult)} == set(d)
    assert json.loads(json.dumps(d)) == d
    assert reward.reward(FULL_QUERY, FULL) == r.reward
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.total = 0  # type: ignore[misc]


def test_selftest_rows() -> None:
    rows = reward.selftest_rows()
    assert [(q, note) for q, note, _ in rows] == [(q, n) for q, _, n in reward.SELFTEST_EXAMPLES]
    excellent, only_lex, think, leak, drops_entity, generic = (r for _, _, r in rows)
    assert excellent.rating == "Excellent"
    assert only_lex.only_mode == "lex"
    assert think.think_bonus == 0
    assert leak.deductions == ("chat template leakage",)
    assert drops_entity.entity == 0
    assert any("generic" in d for d in generic.deductions)
