"""From a raw completion to typed lines: clean, detect leakage, split by prefix, read /only:.

The helpers behind rules 1-3 of `shared/spec/scoring.md`: what the rubric looks at before it
scores anything.
"""

from __future__ import annotations

import re

from qmd_ft.prompt import IM_END
from qmd_ft.rubric.words import SPECIAL_TOKENS

_THINK_SPAN = re.compile(r"<think>.*?</think>", re.DOTALL)
_ONLY_MODE = re.compile(r"\s/only:(lex|vec|hyde)\s*\Z", re.IGNORECASE)


def clean(completion: str) -> tuple[str, bool]:
    """Drop `<|im_end|>` and think blocks; return (text, used_thinking).

    Thinking is only "used" when a block both opens and closes; a lone tag stays in the text.
    """
    text = completion.replace(IM_END, "").strip()
    used_thinking = "<think>" in text and "</think>" in text
    if used_thinking:
        text = _THINK_SPAN.sub("", text).strip()
    return text, used_thinking


def leaks(text: str) -> bool:
    """True when text holds a LEAK_MARKER (the three special tokens all start with "<|")."""
    return (
        ("<|" in text and any(marker in text for marker in SPECIAL_TOKENS))
        or "\nassistant\n" in text
        or "\nuser\n" in text
    )


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


def parse_only_mode(query: str) -> tuple[str | None, str]:
    """Return (type, base query) for `... /only:lex|vec|hyde`, else (None, query trimmed).

    The slash and the whitespace before it are required, so "x only: lex" is an ordinary query.
    """
    m = _ONLY_MODE.search(query)
    if m is None:
        return None, query.strip()
    return m.group(1).lower(), query[: m.start()].strip()
