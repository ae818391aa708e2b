"""GGUF export for llama.cpp, Ollama and QMD: write, quantize, verify, describe.

QMD runs the model through llama.cpp, so a release is a set of GGUF files. QMD's original
recipe cloned and built llama.cpp at run time to use its converter; this package does the same
job in pure Python with the `gguf` package (writer, tensor-name map, vocabulary, Q8_0), so no
checkout is needed. The K-quants and verification need llama.cpp itself, through
llama-cpp-python: an optional extra (`gguf-runtime`, see `runtime`), because it compiles.

Modules, in the order `qmd-ft export gguf` uses them:

- `export`: HF-format Qwen3 directory to one f32/f16/bf16/q8_0 GGUF, streaming the weights.
- `quantize`: Q4_K_M, Q5_K_M from the lossless file through llama.cpp's own quantizer.
- `verify`: load each file, check metadata, compare greedy output and logits to transformers.
- `modelfile`: the Ollama Modelfile beside the files.
- `build`: all of the above for one model, plus the manifest with sizes and hashes.

This module itself imports nothing heavy: the CLI validates `--quant` with it before any of
numpy, gguf or llama_cpp is loaded.
"""

from __future__ import annotations

from qmd_ft.errors import UserError

FULL_TYPES = ("f32", "f16", "bf16")
"""Full-precision types: verified by logit parity with transformers."""

WRITTEN_TYPES = (*FULL_TYPES, "q8_0")
"""Types written directly from the safetensors weights by the pure-Python exporter."""

K_QUANT_TYPES = ("q4_k_m", "q5_k_m")
"""Types made by llama.cpp's quantizer from a lossless GGUF (needs the `gguf-runtime` extra)."""

ALL_TYPES = WRITTEN_TYPES + K_QUANT_TYPES
DEFAULT_TYPES = ("f16", "q8_0", "q4_k_m", "q5_k_m")


def parse_types(text: str) -> list[str]:
    """`"f16,Q4_K_M"` to `["f16", "q4_k_m"]`: lower-cased, de-duplicated, in the given order."""
    types: list[str] = []
    for item in (part.strip().lower() for part in text.split(",")):
        if not item:
            continue
        if item not in ALL_TYPES:
            raise UserError(f"unknown GGUF type {item!r}: choose from {', '.join(ALL_TYPES)}")
        if item not in types:
            types.append(item)
    if not types:
        raise UserError(f"no GGUF type given: choose from {', '.join(ALL_TYPES)}")
    return types


def file_name(model_name: str, gguf_type: str) -> str:
    """`<model>-<TYPE>.gguf`, the naming llama.cpp's tools and the Hub's GGUF repos use."""
    return f"{model_name}-{gguf_type.upper()}.gguf"
