"""llama-cpp-python, optional and quiet: GGUF loading with one-line errors, llama.cpp's log
captured.

llama-cpp-python binds what verification and K-quants need (loading, tokenizing with special
tokens, per-position logits, seeded sampling, `llama_model_quantize`) but ships no wheel on PyPI:
installing it compiles llama.cpp (~10 min on one core, and only where a C++ compiler exists).
The bindings with wheels fall short (checked 2026-12 on their latest releases): xllamacpp does
not export `llama_model_quantize` and offers a server API without per-position logits;
llama-cpp-py-sync's Linux wheels are x86_64 only and need glibc 2.38 although tagged
manylinux2014. So llama-cpp-python is an extra of its own, `gguf-runtime`, off the default
install; writing f32/f16/bf16/q8_0 files needs only the pure-Python `gguf` package. What needs
the runtime (verification, K-quants, the gguf eval backend) asks for it through
`require_llama_cpp`, which names what was attempted and how to add the extra in one line.

llama.cpp logs everything it does to stderr, and on a bad file says why only there ("tensor
'blk.3.ffn_down.weight' data is not within the file bounds") while the Python binding raises a
bare "Failed to load model". Routing the log into memory keeps the CLI's output readable and
lets the error we raise carry llama.cpp's own reason.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from qmd_ft.errors import UserError
from qmd_ft.gguf import K_QUANT_TYPES
from qmd_ft.prompt import ENDOFTEXT, IM_END

if TYPE_CHECKING:
    from llama_cpp import Llama

RUNTIME_EXTRA = "gguf-runtime"

RUNTIME_REQUIREMENTS = ("llama-cpp-python>=0.3.36",)
"""What `RUNTIME_EXTRA` installs, for places that install it without this project's extras
(an HF Job installs the lock, the shipped wheel, then these)."""

SAFE_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
    "-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
)
"""Build flags for llama-cpp-python on x86-64 Linux: llama.cpp built natively on a CPU with AMX
(Intel Sapphire Rapids and later, common in GPU servers) crashed here on any Q8_0 tensor, in
`ggml_backend_amx_mul_mat`; this build leaves AMX out and keeps AVX2."""
"""pyproject's extra that adds llama-cpp-python."""

INSTALL_HINT = (
    "llama-cpp-python, which is not installed (it has no wheel on PyPI and compiles llama.cpp, "
    f"~10 min): uv pip install -e '.[{RUNTIME_EXTRA}]' or pip install -e '.[{RUNTIME_EXTRA}]'"
)
"""How to add the runtime, said wherever it is missing."""

NO_VERIFY = "skip verification: --no-verify (export.verify: false in a config)"
"""The way around verification when its runtime is missing."""


def runtime_available() -> bool:
    """Whether llama-cpp-python is installed (checked without loading its library)."""
    return importlib.util.find_spec("llama_cpp") is not None


def missing_runtime(what: str, otherwise: str = "") -> str:
    """The one line saying that `what` needs the runtime, how to add it, and any way around."""
    return f"{what} needs {INSTALL_HINT}" + (f"; or {otherwise}" if otherwise else "")


def require_llama_cpp(what: str, otherwise: str = "") -> ModuleType:
    """The `llama_cpp` module, or a UserError saying that `what` needs it and how to add it."""
    if not runtime_available():
        raise UserError(missing_runtime(what, otherwise))
    return importlib.import_module("llama_cpp")


def require_runtime_for(types: Sequence[str], verify: bool) -> None:
    """Raise the one-line UserError when K-quants among `types`, or verifying, need the runtime
    and it is missing: called before anything long (writing files, a pipeline's training)."""
    quants = [t for t in types if t in K_QUANT_TYPES]
    if quants:
        require_llama_cpp(f"quantizing to {', '.join(quants)}")
    if verify:
        require_llama_cpp("verifying GGUF files", NO_VERIFY)


_lines: list[str] = []
_depth = 0
"""Open `llama_errors` blocks; lines logged outside any block are dropped."""
_callback: Any = None
"""The installed ctypes callback; kept referenced so it is not garbage-collected."""


def _install_log_capture() -> None:
    """Send llama.cpp's log to memory instead of stderr, once per process.

    Lines are filtered by text, not level: ggml renumbered its log levels between releases
    (ERROR was 3, is 4 in the llama.cpp that llama-cpp-python 0.3.36 bundles).
    """
    global _callback
    if _callback is not None:
        return
    llama_cpp = require_llama_cpp("llama.cpp's log")

    @llama_cpp.llama_log_callback
    def capture(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if _depth:
            _lines.append(text.decode("utf-8", "replace").strip())

    _callback = capture
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))


@contextmanager
def llama_errors() -> Iterator[list[str]]:
    """The lines llama.cpp logs inside the block that report an error or failure, in order."""
    global _depth
    _install_log_capture()
    start = len(_lines)
    seen: list[str] = []
    _depth += 1
    try:
        yield seen
    finally:
        _depth -= 1
        seen.extend(line for line in _lines[start:] if _is_error(line))
        del _lines[start:]


def _is_error(line: str) -> bool:
    lowered = line.lower()
    return "error" in lowered or "failed" in lowered


def reason(errors: list[str], fallback: str) -> str:
    """llama.cpp's first error line, without its `function_name: ` and `error ...: ` prefixes."""
    if not errors:
        return fallback
    text = errors[0]
    for prefix in ("error loading model: ", "error: "):
        if prefix in text:
            return text.split(prefix, 1)[1]
    head, sep, rest = text.partition(": ")
    return rest if sep and " " not in head else text


def load(
    path: Path,
    *,
    n_ctx: int = 512,
    logits_all: bool = False,
    full_precision_cache: bool = False,
    n_gpu_layers: int = 0,
    seed: int = 0,
) -> Llama:
    """Open a GGUF model with llama-cpp-python, or raise a one-line UserError saying why not.

    `full_precision_cache` keeps the KV cache in f32 (llama.cpp's default is f16), so that
    comparing an f32 file with transformers measures the file, not the cache's rounding.
    """
    llama_cpp = require_llama_cpp("loading a GGUF file")
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such GGUF file")
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise UserError(f"{path}: not a GGUF file (bad magic)")
    f32 = llama_cpp.GGML_TYPE_F32
    cache = {"type_k": f32, "type_v": f32} if full_precision_cache else {}
    with llama_errors() as errors:
        try:
            return llama_cpp.Llama(
                str(path),
                n_ctx=n_ctx,
                n_batch=n_ctx,
                logits_all=logits_all,
                n_gpu_layers=n_gpu_layers,
                seed=seed,
                verbose=False,
                **cache,
            )
        except ValueError:
            pass
    raise UserError(f"{path}: llama.cpp cannot load it: {reason(errors, 'unknown error')}")


def stop_ids(llm: Any) -> set[int]:
    """Token ids that end a completion in a loaded file: its eos, `<|im_end|>`, `<|endoftext|>`
    (each one special token), as the other backends stop."""
    ids = {llm.tokenize(t.encode(), add_bos=False, special=True)[0] for t in (IM_END, ENDOFTEXT)}
    return ids | {llm.token_eos()}
