"""Check a written GGUF file the way QMD will use it: load it, read it back, generate with it.

Per file, each check is recorded (name, pass/fail, detail) so the manifest says what was
verified and a failure says which part broke:

- `load`: llama-cpp-python opens it (a corrupt or truncated file fails here, with llama.cpp's
  own reason, and no other check runs). Without llama-cpp-python (the optional `gguf-runtime`
  extra) nothing is checked: a UserError says how to add it.
- `format`: gguf's reader parses the file and its `general.file_type` is the type asked for
  (or, verifying a file alone, tells its type); the count of tensors per storage type is kept
  (it shows K-quant fallbacks).
- `metadata`: architecture `qwen3`, context length, the ids of `<|im_start|>` and `<|im_end|>`
  (each a single token; eos is `<|im_end|>`), and the chat template.
- `tokens`: the standard prompt (`render_prompt(VERIFY_QUERY)`) tokenizes to transformers' ids.
- `parity` (f32, f16, bf16): the greedy completion equals transformers' token for token, or,
  where a near-tie flips a token, the logits of the whole sequence (teacher-forced) agree
  within `RTOL` of the largest reference logit.
- `generate` (quantized): a completion comes out.
- `score` (quantized): when the model is meaningful (transformers' completion scores at least
  `MEANINGFUL_PERCENT`), the file's rubric score may trail it by at most `SCORE_MARGIN` points.
  A random or barely-trained model scores near zero whatever the precision, so there the check
  is recorded as skipped, not passed; top-1 agreement with the reference logits is recorded
  either way.

The reference runs in transformers in float32, once per export. Without `--model` (verifying
a file alone) the checks that need it are limited to what the file can say about itself.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from qmd_ft.errors import UserError
from qmd_ft.gguf import ALL_TYPES, FULL_TYPES
from qmd_ft.gguf.export import read_config
from qmd_ft.gguf.runtime import load, require_llama_cpp, stop_ids
from qmd_ft.prompt import ENDOFTEXT, IM_END, IM_START, render_prompt

VERIFY_QUERY = "how to configure authentication"
"""The standard prompt's query: one of QMD's eval queries, plain ASCII words."""

MAX_NEW_TOKENS = 64
"""Enough for the first lines of an expansion; a 1.7B f32 reference stays under a minute."""

RTOL = {"f32": 1e-3, "f16": 1e-2, "bf16": 3e-2}
"""Allowed max |logit - reference| / max |reference logit| per full-precision type.

Measured with an f32 KV cache: on the tiny model 4.5e-7 (f32), 5.2e-4 (f16), 4.3e-3 (bf16); on
the benchmark's random model of Qwen3-1.7B's shapes (28 layers) 2.3e-3 (f16). The bounds leave
room for a deeper model's accumulated rounding, while a wrong tensor layout, RoPE or tokenizer
moves logits by the order of the logits themselves.
"""

MEANINGFUL_PERCENT = 40.0
"""Reference score (rubric percentage, "Acceptable" and up) from which scores are compared."""

SCORE_MARGIN = 20.0
"""Rubric percentage points a quantized file may lose against the float32 reference."""


_FILE_TYPE_NAMES = {
    "f32": "ALL_F32",
    **{t: f"MOSTLY_{t.upper()}" for t in ALL_TYPES if t != "f32"},
}
FILE_TYPES = {name: kind for kind, name in _FILE_TYPE_NAMES.items()}
"""`general.file_type` names (gguf.LlamaFileType) to our type names."""


@dataclass(frozen=True)
class Reference:
    """transformers' float32 view of the standard prompt: what every file must reproduce."""

    query: str
    max_new_tokens: int
    prompt_ids: list[int]
    completion_ids: list[int]
    logits: np.ndarray
    text: str
    score: float
    context_length: int
    special_ids: dict[str, int]
    chat_template: str


@dataclass(frozen=True)
class Check:
    """One verification step's outcome; `ok` None means skipped, with the reason in detail."""

    name: str
    ok: bool | None
    detail: str = ""


@dataclass
class Verification:
    """Every check of one file, plus the measurements behind them."""

    path: Path
    gguf_type: str | None
    checks: list[Check] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    tensor_types: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no check failed (skipped checks do not fail a file)."""
        return all(check.ok is not False for check in self.checks)

    @property
    def failure(self) -> str:
        """The failed checks in one line, or "" when none failed."""
        return "; ".join(f"{c.name}: {c.detail}" for c in self.checks if c.ok is False)

    def to_dict(self) -> dict[str, Any]:
        """The manifest entry's verification part."""
        return {
            "verified": self.ok,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "metrics": self.metrics,
        }


def require_reference() -> None:
    """Raise a one-line UserError when torch or transformers (the reference) is missing."""
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(
            f"verifying GGUF files needs {' and '.join(missing)}: "
            "pip install -e '.[cuda]', or pass --no-verify"
        )


def reference(
    model_dir: Path, query: str = VERIFY_QUERY, max_new_tokens: int = MAX_NEW_TOKENS
) -> Reference:
    """Greedy completion and teacher-forced logits of the standard prompt, in transformers."""
    require_reference()
    config = read_config(Path(model_dir))  # a clear error for a wrong path, before loading
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.utils import logging as hf_logging

    from qmd_ft.reward import score

    hf_logging.disable_progress_bar()  # its tqdm bar would break through the CLI's own
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    special_ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (IM_START, IM_END, ENDOFTEXT)}
    prompt_ids = tokenizer(render_prompt(query), add_special_tokens=False)["input_ids"]
    greedy = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=[special_ids[IM_END], special_ids[ENDOFTEXT]],
        pad_token_id=special_ids[ENDOFTEXT],
    )
    with torch.inference_mode():
        out = model.generate(torch.tensor([prompt_ids]), generation_config=greedy)
        sequence = out[0].tolist()
        logits = model(torch.tensor([sequence])).logits[0].float().numpy()
    completion_ids = sequence[len(prompt_ids) :]
    text = _completion_text(tokenizer.decode(completion_ids, skip_special_tokens=False))
    return Reference(
        query=query,
        max_new_tokens=max_new_tokens,
        prompt_ids=prompt_ids,
        completion_ids=completion_ids,
        logits=logits,
        text=text,
        score=score(query, text).percentage,
        context_length=int(config["max_position_embeddings"]),
        special_ids=special_ids,
        chat_template=tokenizer.chat_template or "",
    )


def _completion_text(text: str) -> str:
    """A completion's text up to its stop token."""
    for stop in (IM_END, ENDOFTEXT):
        text = text.split(stop, 1)[0]
    return text


def verify_file(path: Path, gguf_type: str | None, ref: Reference | None) -> Verification:
    """Run every check on one file; never raises for a bad file, records it instead (a missing
    llama-cpp-python raises: that is no fault of the file).

    `gguf_type` None reads the type from the file; `ref` None (no source model) limits the
    checks to what the file can say about itself.
    """
    require_llama_cpp("verifying GGUF files")
    result = Verification(Path(path), gguf_type)
    query = ref.query if ref else VERIFY_QUERY
    max_new_tokens = ref.max_new_tokens if ref else MAX_NEW_TOKENS
    try:
        n_ctx = len(ref.prompt_ids) + len(ref.completion_ids) if ref else 0
        llm = load(path, n_ctx=max(256, n_ctx + 16), logits_all=True, full_precision_cache=True)
    except UserError as e:
        result.checks.append(Check("load", False, str(e).removeprefix(f"{path}: ")))
        return result
    result.checks += [Check("load", True), _check_format(result)]
    gguf_type = result.gguf_type
    try:
        result.checks.append(_check_metadata(llm, ref))
        prompt_ids = llm.tokenize(render_prompt(query).encode(), add_bos=False, special=True)
        if ref is not None:
            same = prompt_ids == ref.prompt_ids
            detail = "" if same else f"llama.cpp {prompt_ids[:12]}… vs {ref.prompt_ids[:12]}…"
            result.checks.append(Check("tokens", same, detail))
        completion = greedy_ids(llm, prompt_ids, max_new_tokens)
        result.metrics["completion"] = _completion_text(
            llm.detokenize(completion, special=True).decode("utf-8", "replace")
        )
        if gguf_type in FULL_TYPES and ref is not None:
            result.checks.append(_check_parity(llm, ref, completion, gguf_type, result.metrics))
        else:
            result.checks += _check_generate(llm, ref, completion, query, result.metrics)
    finally:
        llm.close()
    return result


def _check_format(result: Verification) -> Check:
    """Parse the file with gguf's reader; record tensor types; check or infer the file type."""
    try:
        reader = gguf.GGUFReader(result.path)
    except (ValueError, IndexError, KeyError, OSError) as e:
        return Check("format", False, f"not a valid GGUF file ({type(e).__name__}: {e})")
    counts: dict[str, int] = {}
    for tensor in reader.tensors:
        counts[tensor.tensor_type.name] = counts.get(tensor.tensor_type.name, 0) + 1
    result.tensor_types = dict(sorted(counts.items()))
    field_ = reader.get_field(gguf.Keys.General.FILE_TYPE)
    if field_ is None:
        return Check("format", False, "no general.file_type")
    found = gguf.LlamaFileType(int(field_.contents())).name
    if result.gguf_type is None:
        result.gguf_type = FILE_TYPES.get(found)
    elif found != _FILE_TYPE_NAMES[result.gguf_type]:
        want = _FILE_TYPE_NAMES[result.gguf_type]
        return Check("format", False, f"general.file_type is {found}, not {want}")
    return Check("format", True, found)


def _check_metadata(llm: Any, ref: Reference | None) -> Check:
    """Architecture, context length, special-token ids and chat template."""
    meta = llm.metadata
    problems = []
    arch = meta.get("general.architecture")
    if arch != "qwen3":
        problems.append(f"architecture {arch!r}, not 'qwen3'")
    n_ctx = meta.get(f"{arch}.context_length")
    if n_ctx is None or (ref is not None and int(n_ctx) != ref.context_length):
        want = ref.context_length if ref else "a value"
        problems.append(f"context length {n_ctx}, expected {want}")
    ids = {}
    for token in (IM_START, IM_END):
        got = llm.tokenize(token.encode(), add_bos=False, special=True)
        ids[token] = got[0] if len(got) == 1 else None
        if len(got) != 1:
            problems.append(f"{token} is {len(got)} tokens, not one")
        elif ref is not None and got[0] != ref.special_ids[token]:
            problems.append(f"{token} has id {got[0]}, not {ref.special_ids[token]}")
    eos = meta.get("tokenizer.ggml.eos_token_id")
    if ids.get(IM_END) is not None and eos != str(ids[IM_END]):
        problems.append(f"eos id {eos}, not {IM_END} ({ids[IM_END]})")
    template = meta.get("tokenizer.chat_template")
    if not template:
        problems.append("no chat template")
    elif ref is not None and template != ref.chat_template:
        problems.append("chat template differs from the model's")
    detail = "; ".join(problems) or f"qwen3, context {n_ctx}, {IM_START}={ids.get(IM_START)}"
    return Check("metadata", not problems, detail)


def greedy_ids(llm: Any, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    """Argmax decoding from the file's own logits, up to and including a stop token.

    Argmax over the raw logits rather than llama.cpp's sampler chain: nothing (repeat penalty,
    min-p) can differ from transformers' greedy search.
    """
    stops = stop_ids(llm)
    llm.reset()
    llm.eval(prompt_ids)
    out: list[int] = []
    for _ in range(max_new_tokens):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(token)
        if token in stops:
            break
        llm.eval([token])
    return out


def forced_logits(llm: Any, sequence: list[int]) -> np.ndarray:
    """The file's logits at every position of `sequence` (teacher forcing)."""
    llm.reset()
    llm.eval(sequence)
    return np.array(llm.scores[: len(sequence)], dtype=np.float32)


def _check_parity(
    llm: Any, ref: Reference, completion: list[int], gguf_type: str, metrics: dict[str, Any]
) -> Check:
    """Identical greedy tokens, or logits within `RTOL` of the largest reference logit."""
    logits = forced_logits(llm, ref.prompt_ids + ref.completion_ids)
    diff = float(np.abs(logits - ref.logits).max())
    scale = float(np.abs(ref.logits).max()) or 1.0
    same = completion == ref.completion_ids
    metrics.update(
        greedy_identical=same,
        max_abs_logit_diff=diff,
        rel_logit_diff=diff / scale,
        rtol=RTOL[gguf_type],
    )
    ok = same or diff / scale <= RTOL[gguf_type]
    pairs = enumerate(zip(completion, ref.completion_ids, strict=False))
    first = next(
        (i for i, (a, b) in pairs if a != b), min(len(completion), len(ref.completion_ids))
    )
    detail = "greedy tokens identical" if same else f"greedy differs from token {first}"
    detail += f"; max |Δlogit| {diff:.3g} ({diff / scale:.2g} of max, bound {RTOL[gguf_type]:g})"
    return Check("parity", ok, detail)


def _check_generate(
    llm: Any, ref: Reference | None, completion: list[int], query: str, metrics: dict[str, Any]
) -> list[Check]:
    """A completion was produced; its score is compared when the model is meaningful."""
    if not completion:
        return [Check("generate", False, "no token generated")]
    produced = Check("generate", True, f"{len(completion)} tokens")
    if ref is None:
        return [produced, Check("score", None, "skipped: no reference model given")]
    from qmd_ft.reward import score

    logits = forced_logits(llm, ref.prompt_ids + ref.completion_ids)
    agree = float((logits.argmax(axis=1) == ref.logits.argmax(axis=1)).mean())
    got = score(query, metrics["completion"]).percentage
    metrics.update(top1_agreement=agree, score=got, reference_score=ref.score)
    detail = f"{got:.1f}% vs reference {ref.score:.1f}%, top-1 agreement {agree:.0%}"
    if ref.score < MEANINGFUL_PERCENT:
        reason = f"skipped: reference scores below {MEANINGFUL_PERCENT:g}%"
        return [produced, Check("score", None, f"{detail}; {reason}")]
    ok = got >= ref.score - SCORE_MARGIN
    return [produced, Check("score", ok, f"{detail} (margin {SCORE_MARGIN:g} points)")]
