"""The Ollama Modelfile written beside the GGUF files.

`ollama create qmd-expansion -f Modelfile` then serves the model with exactly the prompt it was
trained and evaluated on: the TEMPLATE is `qmd_ft.prompt.render_prompt` with the query replaced
by Ollama's `{{ .Prompt }}`, so `ollama run qmd-expansion "rust error handling"` sends the same
text QMD does. Generation stops at `<|im_end|>` or `<|endoftext|>`, and the sampling defaults
are eval's (greedy, its token budget), so Ollama serves what eval measured.
"""

from __future__ import annotations

from pathlib import Path

from qmd_ft.config import EvalConfig
from qmd_ft.prompt import ENDOFTEXT, IM_END, render_prompt

MODELFILE = "Modelfile"

PREFERENCE = ("q4_k_m", "q5_k_m", "q8_0", "f16", "bf16", "f32")
"""Which file FROM names when several were written: Ollama's usual default first."""

_SLOT = "\x00query\x00"
"""A query no user types, replaced by Ollama's placeholder after rendering."""


def template() -> str:
    """`render_prompt` as an Ollama (Go text/template) TEMPLATE."""
    rendered = render_prompt(_SLOT)
    if rendered.count(_SLOT) != 1:
        raise RuntimeError("render_prompt must contain the query exactly once")
    return rendered.replace(_SLOT, "{{ .Prompt }}")


def modelfile_text(gguf_name: str, eval_cfg: EvalConfig | None = None) -> str:
    """The Modelfile for `gguf_name`, a file in the same directory."""
    cfg = eval_cfg or EvalConfig()
    return "\n".join(
        [
            "# Ollama Modelfile written by qmd-ft export gguf.",
            f"# ollama create qmd-expansion -f {MODELFILE}",
            f"FROM ./{gguf_name}",
            f'TEMPLATE """{template()}"""',
            f'PARAMETER stop "{IM_END}"',
            f'PARAMETER stop "{ENDOFTEXT}"',
            f"PARAMETER temperature {cfg.temperature:g}",
            f"PARAMETER top_p {cfg.top_p:g}",
            f"PARAMETER num_predict {cfg.max_new_tokens}",
            "",
        ]
    )


def pick_file(files: dict[str, str]) -> str:
    """The file name FROM should use, from `{gguf type: file name}` (at least one)."""
    for kind in PREFERENCE:
        if kind in files:
            return files[kind]
    raise ValueError(f"no GGUF type among {sorted(files)}")


def write_modelfile(out_dir: Path, gguf_name: str, eval_cfg: EvalConfig | None = None) -> Path:
    """Write `out_dir/Modelfile` naming `gguf_name`; returns its path."""
    path = Path(out_dir) / MODELFILE
    path.write_text(modelfile_text(gguf_name, eval_cfg), encoding="utf-8")
    return path
