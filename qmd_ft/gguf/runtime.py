"""llama-cpp-python, quietly: GGUF loading with one-line errors, llama.cpp's log captured.

llama.cpp logs everything it does to stderr, and on a bad file says why only there ("tensor
'blk.3.ffn_down.weight' data is not within the file bounds") while the Python binding raises a
bare "Failed to load model". Routing the log into memory keeps the CLI's output readable and
lets the error we raise carry llama.cpp's own reason.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qmd_ft.errors import UserError
from qmd_ft.prompt import ENDOFTEXT, IM_END

if TYPE_CHECKING:
    from llama_cpp import Llama

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
    import llama_cpp

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
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such GGUF file")
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise UserError(f"{path}: not a GGUF file (bad magic)")
    from llama_cpp import GGML_TYPE_F32, Llama

    cache = {"type_k": GGML_TYPE_F32, "type_v": GGML_TYPE_F32} if full_precision_cache else {}
    with llama_errors() as errors:
        try:
            return Llama(
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
