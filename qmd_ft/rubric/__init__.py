"""The QMD query-expansion scoring rubric (v1): GRPO reward and evaluation score in one place.

The release gate compares a new model's score with the deployed model's published score, so
this package must reproduce `shared/spec/scoring.md` to the point: "almost the same rubric" is
a different rubric. It is pure standard-library Python (importable from the CLI, TRL and MLX
code alike, with no torch or mlx), deterministic, and fast enough to score every GRPO rollout
inline: regexes are compiled and vocabularies frozen once, at import time.

Its modules follow the spec's order: `words` (vocabularies), `lines` (cleaning, leakage,
typed lines, `/only:`), `checks` (entities, key terms, generic lines, diversity, echoes,
repetition), `scoring` (the rules, totals, rating, reward) and `selftest` (worked examples).
How trainers call it (prompts and chat messages in, rewards out) is `qmd_ft.reward`.
"""

from qmd_ft.prompt import ONLY_TYPES
from qmd_ft.rubric.checks import (
    diverse,
    echoes,
    extract_entities,
    is_generic,
    keeps_entity,
    keeps_key_terms,
    key_terms,
    repetition_penalty,
)
from qmd_ft.rubric.lines import clean, parse, parse_only_mode
from qmd_ft.rubric.scoring import (
    FAILURE_MAX_POSSIBLE,
    FULL_MAX_POSSIBLE,
    FULL_MAX_POSSIBLE_WITH_HYDE,
    ONLY_MAX_POSSIBLE,
    RUBRIC_VERSION,
    ScoreResult,
    reward,
    score,
)
from qmd_ft.rubric.selftest import SELFTEST_EXAMPLES, selftest_rows
from qmd_ft.rubric.words import GENERIC_PHRASES, KEY_STOPWORDS, LEAK_MARKERS, REPEAT_STOPWORDS

__all__ = [
    "FAILURE_MAX_POSSIBLE",
    "FULL_MAX_POSSIBLE",
    "FULL_MAX_POSSIBLE_WITH_HYDE",
    "GENERIC_PHRASES",
    "KEY_STOPWORDS",
    "LEAK_MARKERS",
    "ONLY_MAX_POSSIBLE",
    "ONLY_TYPES",
    "REPEAT_STOPWORDS",
    "RUBRIC_VERSION",
    "SELFTEST_EXAMPLES",
    "ScoreResult",
    "clean",
    "diverse",
    "echoes",
    "extract_entities",
    "is_generic",
    "keeps_entity",
    "keeps_key_terms",
    "key_terms",
    "parse",
    "parse_only_mode",
    "repetition_penalty",
    "reward",
    "score",
    "selftest_rows",
]
