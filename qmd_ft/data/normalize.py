"""Normalization applied by `prepare`: trimmed text, hyde first, hyde cut near 150 chars.

A hyde passage is a one-line stand-in document; long ones teach the model to ramble and cost
completion tokens, so they are cut at a sentence boundary (QMD's rule, kept).
"""

from __future__ import annotations

from qmd_ft.data.schema import Example
from qmd_ft.prompt import OUTPUT_ORDER

HYDE_MAX_CHARS = 150


def truncate_hyde(text: str, max_chars: int = HYDE_MAX_CHARS) -> str:
    """Cut at the last sentence end before `max_chars`, else at a word, ending with '.'.

    A boundary only counts past half the limit, so a short first sentence doesn't gut it.
    """
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    sentence_end = max(head.rfind(". "), head.rfind("! "), head.rfind("? "))
    if sentence_end > max_chars // 2:
        return head[: sentence_end + 1]
    space = head.rfind(" ")
    if space > max_chars // 2:
        return head[:space].rstrip(",;:") + "."
    return head[: max_chars - 1] + "."


def normalize(example: Example) -> Example:
    """Trimmed, hyde-first (stable within a type), with the hyde truncated."""
    lines = [
        (kind, truncate_hyde(text) if kind == "hyde" else text)
        for kind, text in sorted(example.lines, key=lambda kv: OUTPUT_ORDER.index(kv[0]))
    ]
    return Example(query=" ".join(example.query.split()), lines=tuple(lines))
