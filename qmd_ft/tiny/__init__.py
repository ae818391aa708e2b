"""A tiny Qwen3 model and tokenizer, built offline in seconds, for tests, demos and exporters.

`build_tiny_model` writes a directory that every part of qmd-ft can treat like Qwen/Qwen3-1.7B:
transformers' Auto classes, `mlx_lm.load` and a GGUF writer load it, and its chat template
renders `qmd_ft.prompt.render_prompt` exactly. Its weights are random (it knows nothing), it is
small enough that a CPU trains it from scratch in minutes, and the same seed and data give
byte-identical files (with the same `tokenizers`, which serialises tokenizer.json), so a test
can hash it and a benchmark can rebuild it anywhere.

Choices, and why:

- Every file mirrors the real Qwen3-1.7B checkpoint key for key and is written here as JSON,
  not by transformers' `save_pretrained`: loaders and exporters are tested against the real
  checkpoint's files, and the bytes then do not change with the installed transformers.
- Weights come from NumPy's legacy `RandomState`, whose streams NumPy keeps fixed across
  releases, drawn from N(0, 0.02) like transformers' `initializer_range` init, norms at 1.
  They are stored in float32 so backends can be compared to 1e-4 without rounding noise, and
  building imports neither torch nor transformers.
- The tokenizer is Qwen2/3's pipeline (NFC, Qwen's split regex, byte-level BPE without a prefix
  space), so a GGUF file may honestly say pre-tokenizer "qwen2"; only the vocabulary is small.
  It is learnt from the project's own examples rendered in the prompt format (`data/*.jsonl`,
  `evals/queries.txt`, plus a built-in corpus that is always added, so the vocabulary fills
  to `vocab_size` even with no data): prompts come out short and the fixed text
  ("/no_think Expand this search query:", "lex:") takes few tokens, as with Qwen's vocabulary.
- The five special tokens follow the learnt vocabulary in Qwen's order. `<think>`/`</think>`
  are added tokens that are never split but are not "special", exactly as in Qwen3, so
  `skip_special_tokens=True` keeps them. eos is `<|im_end|>`, pad `<|endoftext|>`, no bos.
- The chat template is Qwen3's, verbatim (TRL ships the same text and recognises the model
  as Qwen3 by it, e.g. to swap in its training template).
- generation_config.json has Qwen3's stop ids but none of its sampling defaults, so `generate`
  on the tiny model is greedy and deterministic unless a caller asks otherwise.

What qmd_ft trains on: `render_prompt(q) + render_completion(c)`, the answer right after
`<|im_start|>assistant\\n` with no think block. Qwen3's template, given the same conversation as
messages, puts an empty `<think>\\n\\n</think>\\n\\n` before a final assistant turn, so the
template is used for prompts only (where it agrees with `render_prompt`), never for training
text.

Modules: `build` (`build_tiny_model`, the directory), `weights` (shape, random weights,
config.json), `tokenizer` (the BPE and its files), `corpus` (what the BPE learns from) and
`qwen3` (Qwen3's chat template and split regex, verbatim). `qmd_ft.tiny_model` re-exports the
public names, the import path every caller uses.
"""

from qmd_ft.tiny.build import build_tiny_model
from qmd_ft.tiny.corpus import BUILTIN_EXAMPLES, DEFAULT_DATA_DIR, training_texts
from qmd_ft.tiny.qwen3 import QWEN2_SPLIT_REGEX, QWEN3_CHAT_TEMPLATE
from qmd_ft.tiny.tokenizer import ADDED_NOT_SPECIAL, train_tokenizer
from qmd_ft.tiny.weights import INIT_STD, MAX_SEED, TINY_SHAPE, tensor_shapes

__all__ = [
    "ADDED_NOT_SPECIAL",
    "BUILTIN_EXAMPLES",
    "DEFAULT_DATA_DIR",
    "INIT_STD",
    "MAX_SEED",
    "QWEN2_SPLIT_REGEX",
    "QWEN3_CHAT_TEMPLATE",
    "TINY_SHAPE",
    "build_tiny_model",
    "tensor_shapes",
    "train_tokenizer",
    "training_texts",
]
