"""Q4_K_M and Q5_K_M through llama.cpp's own quantizer, bound by llama-cpp-python.

Q8_0 needs no quantizer: the exporter writes it directly (`gguf`'s bit-exact port of llama.cpp's
Q8_0), so only the K-quants need the optional runtime (`qmd_ft.gguf.runtime`).

The K-quant mixes ("_M": some tensors one step more precise, chosen per layer) exist only in
llama.cpp's C++ code; using its `llama_model_quantize` gives the same files as the
`llama-quantize` tool without building it. K-quants pack rows in blocks of 256: a tensor whose
rows are not a multiple of 256 long is quantized with llama.cpp's fallback type instead
(Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0). Real Qwen3 sizes never need it; tiny test models
do. `tensor_types` in the manifest records what each file really holds.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from qmd_ft.errors import UserError
from qmd_ft.gguf.runtime import llama_errors, reason, require_llama_cpp

FTYPES = {
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
}
"""Our type names to llama.cpp's `llama_ftype` constants."""


def quantize(src: Path, dst: Path, qtype: str) -> Path:
    """Quantize the full-precision GGUF `src` to `dst` on every core; returns `dst`.

    Written as `<dst>.partial` and renamed on success, so a failed run leaves no file that
    looks complete.
    """
    if qtype not in FTYPES:
        raise UserError(f"cannot quantize to {qtype!r}: choose from {', '.join(FTYPES)}")
    llama_cpp = require_llama_cpp(f"quantizing to {qtype}")

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, FTYPES[qtype])
    params.nthread = 0  # llama.cpp's "all hardware threads"
    partial = dst.with_name(dst.name + ".partial")
    with llama_errors() as errors:
        code = llama_cpp.llama_model_quantize(
            str(src).encode(), str(partial).encode(), ctypes.byref(params)
        )
    if code != 0:
        partial.unlink(missing_ok=True)
        why = reason(errors, f"llama_model_quantize returned {code}")
        raise UserError(f"quantizing {src.name} to {qtype} failed: {why}")
    os.replace(partial, dst)
    return dst
