"""The rubric's vocabularies and markers, written as `shared/spec/scoring.md` lists them.

Every set is frozen and every phrase split once, at import time: the checks run per line of
every GRPO rollout, so nothing here may be rebuilt per call.
"""

from __future__ import annotations


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
GENERIC_WORDS = tuple((phrase, tuple(phrase.split())) for phrase in GENERIC_PHRASES)
"""Each generic phrase with its words split once: is_generic runs per lex line, per rollout."""

SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
"""The chat template's special tokens; any of them in an answer is leakage."""

LEAK_MARKERS = (*SPECIAL_TOKENS, "\nassistant\n", "\nuser\n")
