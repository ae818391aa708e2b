"""The rubric as trainers call it: prompts and chat messages in, one 0..1 reward each out.

TRL's GRPOTrainer and the MLX loop hand a reward function the rendered prompt (or a chat
message list) and the completion, not the dataset's query; this module reads the query back
(`shared/spec/scoring.md`, "Query from a prompt") and scores with `qmd_ft.rubric`.

The rubric itself lives in `qmd_ft.rubric`; its public names are re-exported here, so
`qmd_ft.reward` stays the one import for scoring that it has always been.
"""

from __future__ import annotations

from typing import Any

from qmd_ft import rubric
from qmd_ft.prompt import IM_END, INSTRUCTION
from qmd_ft.rubric import *  # noqa: F403 (the rubric's public API, re-exported)

# `_rating` too: tests pin the rating thresholds through this module.
from qmd_ft.rubric.scoring import _rating, score  # noqa: F401

__all__ = [*rubric.__all__, "completion_text", "qmd_reward", "query_from_prompt"]


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
    cut = text.rfind(INSTRUCTION)
    if cut < 0:
        return text.strip()
    return text[cut + len(INSTRUCTION) :].strip().split(IM_END, 1)[0].strip()


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
