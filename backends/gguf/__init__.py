"""Eval-only backend: generate with a GGUF file through llama-cpp-python, as QMD does.

`qmd-ft eval --backend gguf --model outputs/gguf/merged-Q4_K_M.gguf` scores the very file QMD
will load, quantization included, so the release gate can compare a quantized file with the
model it came from. Training and merging need gradients and safetensors weights, so `sft`,
`grpo` and `merge` refuse with a UserError.

Decoding matches the other backends' eval: the prompt is tokenized with special tokens parsed
and no BOS (Qwen3 has none), greedy when the temperature is 0 (no repeat penalty, top-k or
min-p to make it differ from argmax), stopping at `<|im_end|>` or `<|endoftext|>`, and a
`<think>` block is removed from the answer.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

from qmd_ft.backend import Generator, TrainRequest
from qmd_ft.config import EvalConfig
from qmd_ft.errors import UserError
from qmd_ft.prompt import ENDOFTEXT, IM_END

PROMPT_BUDGET = 512
"""Context tokens kept for the prompt; QMD's rendered prompts are well under 100."""

_THINK = re.compile(r"<think>.*?(?:</think>\s*|\Z)", re.DOTALL)
"""A think block, or an unclosed one running to the end (the token budget ran out)."""

UTF8_SLACK = 8
"""Extra context for the tokens that finish a multi-byte character after max_tokens."""

_INFERENCE_ONLY = (
    "the gguf backend is for inference (eval) only: GGUF files cannot be trained or merged; "
    "use --backend cuda or mlx for {}"
)


def strip_think(text: str) -> str:
    """The answer without `<think>…</think>` blocks (and the blank lines after them)."""
    return _THINK.sub("", text)


def _gpu_layers(device: str | None) -> int:
    """Layers to offload: none on CPU, all for cuda (a CPU-only llama.cpp build ignores it)."""
    if device in (None, "cpu"):
        return 0
    if device == "cuda":
        return -1
    raise UserError(f"unknown device {device!r} for the gguf backend: choose cpu or cuda")


class GgufBackend:
    """The `Backend` protocol over llama-cpp-python, generation only."""

    name = "gguf"

    def available(self) -> tuple[bool, str]:
        """Whether llama-cpp-python is installed (checked without loading its library)."""
        if importlib.util.find_spec("llama_cpp") is None:
            return False, "llama-cpp-python is not installed: pip install 'qmd-ft[gguf]'"
        return True, ""

    def sft(self, req: TrainRequest) -> Path:
        """Refused: GGUF is for inference."""
        raise UserError(_INFERENCE_ONLY.format("sft"))

    def grpo(self, req: TrainRequest) -> Path:
        """Refused: GGUF is for inference."""
        raise UserError(_INFERENCE_ONLY.format("grpo"))

    def merge(self, base: str, adapters: list[str], out: Path) -> Path:
        """Refused: GGUF is for inference."""
        raise UserError(_INFERENCE_ONLY.format("merge"))

    def generator(
        self, model: str, adapters: list[str], gen: EvalConfig, device: str | None = None
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
        from qmd_ft.gguf.runtime import load

        llm = load(
            path,
            # llama-cpp-python 0.3.36 keeps decoding past max_tokens while the text ends in an
            # incomplete UTF-8 character (at most 3 more byte tokens): leave room for that.
            n_ctx=PROMPT_BUDGET + gen.max_new_tokens + UTF8_SLACK,
            n_gpu_layers=_gpu_layers(device),
            seed=gen.seed,
        )

        def generate(prompts: list[str]) -> list[str]:
            return [_complete(llm, prompt, gen) for prompt in prompts]

        return generate


def _complete(llm: Any, prompt: str, gen: EvalConfig) -> str:
    """One completion, think block removed."""
    tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    if len(tokens) > PROMPT_BUDGET:
        raise UserError(f"a prompt is {len(tokens)} tokens; the gguf backend takes {PROMPT_BUDGET}")
    out = llm.create_completion(
        tokens,
        max_tokens=gen.max_new_tokens,
        temperature=gen.temperature,
        top_p=gen.top_p,
        top_k=0,
        min_p=0.0,
        repeat_penalty=1.0,
        seed=gen.seed,
        stop=[IM_END, ENDOFTEXT],
    )
    return strip_think(out["choices"][0]["text"]).strip()


BACKEND = GgufBackend()
