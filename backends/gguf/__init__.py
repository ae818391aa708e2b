"""Eval-only backend: generate with a GGUF file through llama-cpp-python, as QMD does.

llama-cpp-python is optional (the `gguf-runtime` extra: it compiles llama.cpp); without it the
backend reports itself unavailable with the one line saying how to add it.

`qmd-ft eval --backend gguf --model outputs/gguf/merged-Q4_K_M.gguf` scores the very file QMD
will load, quantization included, so the release gate can compare a quantized file with the
model it came from. Training and merging need gradients and safetensors weights: the registry
marks it generate-only, so `sft`, `grpo`, `merge` and `check` refuse with a UserError. How it
decodes: `generate`.
"""

from qmd_ft.backend import LazyBackend

BACKEND = LazyBackend(
    "gguf",
    __name__,
    {
        "available": ".generate:available",
        "generator": ".generate:make_generator",
        "diagnose": ".doctor:diagnose",
    },
)
