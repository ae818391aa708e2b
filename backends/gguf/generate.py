"""The gguf backend's generation: a GGUF file through llama-cpp-python, as QMD runs it.

Decoding matches the other backends' eval: the prompt is tokenized with special tokens parsed
and no BOS (Qwen3 has none), greedy when the temperature is 0 (no repeat penalty or min-p to
make it differ from argmax; `top_k`/`top_p` from the eval config, QMD's 20/0.8 when
sampled), at most `max_new_tokens` tokens up to `<|im_end|>` or `<|endoftext|>`, decoded
with special tokens kept (llama-cpp-python's `create_completion` would drop a leaked
`<|im_start|>` that the rubric scores a failure), think blocks removed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qmd_ft.backend import Generator
from qmd_ft.config import EvalConfig
from qmd_ft.errors import UserError
from qmd_ft.gguf.runtime import missing_runtime, runtime_available
from qmd_ft.prompt import strip_think

PROMPT_BUDGET = 512
"""Context tokens kept for the prompt; QMD's rendered prompts are well under 100."""


def _gpu_layers(device: str | None) -> int:
    """Layers to offload: none on CPU, all for cuda (a CPU-only llama.cpp build ignores it)."""
    if device in (None, "cpu"):
        return 0
    if device == "cuda":
        return -1
    raise UserError(f"unknown device {device!r} for the gguf backend: choose cpu or cuda")


def available() -> tuple[bool, str]:
    """Whether llama-cpp-python is installed (checked without loading its library)."""
    if not runtime_available():
        return False, missing_runtime("the gguf eval backend")
    return True, ""


def make_generator(
    model: str, adapters: list[str], gen: EvalConfig, device: str | None = None
) -> Generator:
    """A callable from rendered prompts to completions, using the GGUF file `model`."""
    if adapters:
        raise UserError(
            "the gguf backend runs a merged .gguf file and cannot apply adapters: "
            "merge them (qmd-ft merge), then export (qmd-ft export gguf)"
        )
    path = Path(model)
    if path.suffix.lower() != ".gguf":
        raise UserError(f"{model}: the gguf backend needs a .gguf file")
    from qmd_ft.gguf.runtime import load, stop_ids

    llm = load(
        path,
        n_ctx=PROMPT_BUDGET + gen.max_new_tokens,
        n_gpu_layers=_gpu_layers(device),
        seed=gen.seed,
    )

    stops = stop_ids(llm)

    def generate(prompts: list[str]) -> list[str]:
        return [_complete(llm, prompt, gen, stops) for prompt in prompts]

    return generate


def _complete(llm: Any, prompt: str, gen: EvalConfig, stops: set[int]) -> str:
    """One completion: sampled token by token, cut at the first stop id, decoded specials kept."""
    tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    if len(tokens) > PROMPT_BUDGET:
        raise UserError(f"a prompt is {len(tokens)} tokens; the gguf backend takes {PROMPT_BUDGET}")
    llm.set_seed(gen.seed)
    completion: list[int] = []
    for token in llm.generate(
        tokens,
        top_k=gen.top_k,
        top_p=gen.top_p,
        min_p=0.0,
        temp=gen.temperature,
        repeat_penalty=1.0,
    ):
        if token in stops:
            break
        completion.append(token)
        if len(completion) == gen.max_new_tokens:
            break
    text = llm.detokenize(completion, special=True)
    return strip_think(text.decode("utf-8", errors="replace"))
