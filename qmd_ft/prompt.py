"""The one prompt format every backend, eval and export use.

QMD sends the model a single user turn and reads back `hyde:`/`lex:`/`vec:` lines. Keeping the
rendering here (instead of trusting each tokenizer's chat template) means the text a model was
trained on is byte-for-byte the text it is evaluated and served with, whichever backend made it.
The strings equal what Qwen3's own chat template renders for the same messages.
"""

from __future__ import annotations

import re

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
ENDOFTEXT = "<|endoftext|>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END, THINK_OPEN, THINK_CLOSE)

INSTRUCTION = "Expand this search query:"
NO_THINK = "/no_think"
OUTPUT_ORDER = ("hyde", "lex", "vec")
ONLY_TYPES = ("lex", "vec", "hyde")

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)


def user_message(query: str) -> str:
    """The user turn for one query: `/no_think Expand this search query: {query}`."""
    return f"{NO_THINK} {INSTRUCTION} {query.strip()}"


def messages(query: str, completion: str | None = None) -> list[dict[str, str]]:
    """Chat messages for a query, with the assistant answer when training."""
    msgs = [{"role": "user", "content": user_message(query)}]
    if completion is not None:
        msgs.append({"role": "assistant", "content": completion.strip()})
    return msgs


def render_prompt(query: str) -> str:
    """The generation prompt: the user turn, then an open assistant turn.

    Ends with `<|im_start|>assistant\\n`, exactly what Qwen3's template gives with
    `add_generation_prompt=True` for one user message.
    """
    return f"{IM_START}user\n{user_message(query)}{IM_END}\n{IM_START}assistant\n"


def render_completion(completion: str) -> str:
    """The training target after the prompt: the answer, no think block, closed turn."""
    return f"{completion.strip()}{IM_END}\n"


def render_example(query: str, completion: str) -> str:
    """Prompt and completion as one training text."""
    return render_prompt(query) + render_completion(completion)


def format_output(lines: list[tuple[str, str]]) -> str:
    """Join (type, text) pairs into output text, hyde first, then lex, then vec.

    The order within one type is kept, so a writer's preferred lex line stays first.
    """
    ordered = sorted(lines, key=lambda kv: OUTPUT_ORDER.index(kv[0]))
    return "\n".join(f"{kind}: {text.strip()}" for kind, text in ordered)


def strip_think(completion: str) -> str:
    """The eval text of a completion: its closed `<think>…</think>` blocks removed, trimmed.

    Every eval generator (cuda, mlx, gguf) returns this, as QMD's own eval script did for the
    deployed model's published score, so a new model is gated on the same footing. An unclosed
    `<think>` (the token budget ran out mid-thought) stays, and the rubric scores it a failure.
    Training rewards score the completion unstripped: thinking forfeits the rubric's bonus.
    """
    return _THINK_BLOCK.sub("", completion).strip()
