"""An HF-format Qwen3 directory to one GGUF file (f32, f16, bf16 or q8_0), streaming the weights.

What goes in follows llama.cpp's own `convert_hf_to_gguf.py` for `Qwen3ForCausalLM`, so the file
loads in llama.cpp, Ollama and QMD exactly like one made by that script (the benchmark compares
the two on the same input):

- Architecture metadata from config.json: context length, widths, head counts, key/value
  length (Qwen3's head_dim is not hidden/heads), RoPE base, RMS-norm epsilon.
- Vocabulary from tokenizer.json: byte-level BPE ("gpt2" model, "qwen2" pre-tokenizer) with its
  merges, padded to config's vocab_size with unused `[PADn]` tokens (Qwen3-1.7B has 151,669
  tokens for 151,936 embedding rows). Special added tokens are CONTROL; other added tokens
  (`<think>`) are USER_DEFINED, as llama.cpp's converter decides. bos/eos/pad ids, add_bos
  and the chat template come from `gguf.SpecialVocab`, the converter's own reader.
- Tensors renamed with `gguf.TensorNameMap`; 1-D tensors (norms) stay f32, as llama.cpp's
  kernels expect; `lm_head` is dropped when embeddings are tied (llama.cpp reuses token_embd).
- Q8_0 (the converter's `--outtype q8_0`): every matrix in blocks of 32 through `gguf.quants`,
  a bit-exact port of llama.cpp's reference quantizer, so no compiled llama.cpp is needed; a
  matrix whose rows are not a multiple of 32 long stays f16, as in the converter.

Weights are read straight from the safetensors files in chunks of at most `CHUNK_BYTES`,
converted and written, so peak memory is a few chunks whatever the model size, not 2-3x the
model as with loading a state dict. The files are parsed here (an 8-byte length, a JSON header,
raw little-endian data) rather than with `safetensors.safe_open`: its numpy mode rejects bf16,
the dtype Qwen3 ships in, and its torch mode would make exporting need torch; reading the
bytes ourselves also keeps the source out of the process's resident memory (no mmap).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from qmd_ft.errors import UserError
from qmd_ft.tiny_model import QWEN2_SPLIT_REGEX

ARCH = gguf.MODEL_ARCH.QWEN3
ARCH_NAME = gguf.MODEL_ARCH_NAMES[ARCH]
TOKENIZER_PRE = "qwen2"
"""llama.cpp's name for Qwen2/3's pre-tokenizer split; checked against tokenizer.json."""

CHUNK_BYTES = 64 << 20
"""Source bytes read, converted and written at a time: bounds memory for any tensor size."""

QUANT_CHUNK_DIVISOR = 8
"""Block-quantized output reads CHUNK_BYTES / this at a time: numpy's Q8_0 holds several
float32 copies of its input, so the same budget of source bytes would cost ~10x in memory."""

_SOURCE_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}
"""Safetensors dtypes a Qwen3 checkpoint uses; bf16 is read as its raw 16 bits."""

_T = gguf.GGMLQuantizationType
_OUTPUT_TYPES: dict[str, tuple[gguf.LlamaFileType, gguf.GGMLQuantizationType]] = {
    "f32": (gguf.LlamaFileType.ALL_F32, _T.F32),
    "f16": (gguf.LlamaFileType.MOSTLY_F16, _T.F16),
    "bf16": (gguf.LlamaFileType.MOSTLY_BF16, _T.BF16),
    "q8_0": (gguf.LlamaFileType.MOSTLY_Q8_0, _T.Q8_0),
}
_STORAGE_DTYPES = {_T.F32: np.dtype("<f4"), _T.F16: np.dtype("<f2"), _T.BF16: np.dtype("<u2")}
"""numpy types of the element-wise GGUF types; block-quantized ones are stored as bytes."""

ProgressFn = Callable[[int, int], None]
"""Called with (bytes written so far, bytes to write in all)."""


@dataclass(frozen=True)
class SourceTensor:
    """One tensor of a safetensors file: where its bytes lie, without reading them."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    path: Path
    offset: int
    nbytes: int


@dataclass(frozen=True)
class PlannedTensor:
    """A source tensor with its GGUF name and storage type."""

    source: SourceTensor
    name: str
    qtype: gguf.GGMLQuantizationType

    @property
    def block(self) -> int:
        """Elements per storage block: 1 for f32/f16/bf16, 32 for Q8_0."""
        return gguf.GGML_QUANT_SIZES[self.qtype][0]

    @property
    def nbytes(self) -> int:
        """Bytes in the GGUF file (before alignment padding)."""
        block, block_bytes = gguf.GGML_QUANT_SIZES[self.qtype]
        return math.prod(self.source.shape) // block * block_bytes

    @property
    def stored_as(self) -> tuple[tuple[int, ...], np.dtype]:
        """Shape and numpy type as `GGUFWriter.add_tensor_info` takes them (bytes if quantized)."""
        if self.qtype in _STORAGE_DTYPES:
            return self.source.shape, _STORAGE_DTYPES[self.qtype]
        return gguf.quant_shape_to_byte_shape(self.source.shape, self.qtype), np.dtype(np.uint8)


def read_config(model_dir: Path) -> dict[str, Any]:
    """config.json of a Qwen3 causal LM, or a one-line error saying what is wrong."""
    path = model_dir / "config.json"
    if not path.is_file():
        raise UserError(f"{model_dir}: no config.json (expected an HF-format model directory)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from e
    if config.get("model_type") != "qwen3":
        found = config.get("model_type")
        raise UserError(f"{path}: not a Qwen3 model (model_type {found!r}); only Qwen3 exports")
    return config


def rope_theta(config: dict[str, Any]) -> float:
    """RoPE base: top-level in transformers 4 configs, under `rope_parameters` in 5.x ones.

    Rope scaling (YaRN, linear) is refused rather than dropped: a file without it would load
    and then silently degrade past the original context.
    """
    params = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or {}
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if kind != "default":
        raise UserError(f"rope scaling {kind!r} is not supported by this exporter")
    theta = config.get("rope_theta", params.get("rope_theta"))
    if theta is None:
        raise UserError("config.json has no rope_theta")
    return float(theta)


def index_safetensors(model_dir: Path) -> list[SourceTensor]:
    """Every tensor of the model's safetensors file(s), in file and offset order.

    Uses `model.safetensors.index.json` when present (sharded checkpoints), else every
    `*.safetensors` file in the directory.
    """
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        files = sorted({model_dir / name for name in weight_map.values()})
    else:
        files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise UserError(f"{model_dir}: no *.safetensors weights")
    tensors: list[SourceTensor] = []
    for path in files:
        tensors += _read_header(path)
    return tensors


def _read_header(path: Path) -> list[SourceTensor]:
    """Tensors of one safetensors file, checked against the file's size (truncation)."""
    if not path.is_file():
        raise UserError(f"{path}: missing (listed in model.safetensors.index.json)")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < length <= size - 8:
            raise UserError(f"{path}: not a safetensors file (bad header length)")
        try:
            header = json.loads(f.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: not a safetensors file (bad JSON header: {e})") from e
    base = 8 + length
    tensors = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape = info["dtype"], tuple(info["shape"])
        if dtype not in _SOURCE_DTYPES:
            raise UserError(f"{path}: tensor {name} has dtype {dtype}; expected F32, F16 or BF16")
        begin, end = info["data_offsets"]
        if end - begin != math.prod(shape) * _SOURCE_DTYPES[dtype].itemsize or base + end > size:
            raise UserError(f"{path}: tensor {name} lies outside the file (truncated or corrupt)")
        tensors.append(SourceTensor(name, dtype, shape, path, base + begin, end - begin))
    return sorted(tensors, key=lambda t: t.offset)


def plan_tensors(
    config: dict[str, Any], sources: list[SourceTensor], out_type: str
) -> list[PlannedTensor]:
    """GGUF names and types for every tensor llama.cpp's qwen3 graph needs."""
    tied = bool(config.get("tie_word_embeddings", False))
    name_map = gguf.get_tensor_name_map(ARCH, int(config["num_hidden_layers"]))
    wanted = _OUTPUT_TYPES[out_type][1]
    planned = []
    for source in sources:
        if tied and source.name == "lm_head.weight":
            continue
        name = name_map.get_name(source.name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UserError(f"tensor {source.name} has no GGUF name in llama.cpp's qwen3 model")
        # Norms and other 1-D tensors stay f32: llama.cpp's kernels take them in f32 only.
        one_d = len(source.shape) <= 1 or name.endswith("_norm.weight")
        qtype = _T.F32 if one_d else wanted
        if not one_d and source.shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0]:
            qtype = _T.F16  # rows that do not split into Q8_0 blocks, as the converter does
        planned.append(PlannedTensor(source, name, qtype))
    names = {t.name for t in planned}
    if "token_embd.weight" not in names or (not tied and "output.weight" not in names):
        raise UserError("the checkpoint lacks the embedding or the untied lm_head weights")
    return planned


def read_vocab(model_dir: Path, vocab_size: int) -> tuple[list[str], list[int]]:
    """Token strings and types, id by id, padded to the embedding's row count."""
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise UserError(f"{model_dir}: no tokenizer.json (needed for the GGUF vocabulary)")
    data = json.loads(path.read_text(encoding="utf-8"))
    model = data.get("model") or {}
    if model.get("type") != "BPE" or not _has_qwen2_split(data.get("pre_tokenizer")):
        raise UserError(f"{path}: not Qwen2/3's byte-level BPE tokenizer; cannot say 'qwen2'")
    by_id: dict[int, tuple[str, gguf.TokenType]] = {
        i: (token, gguf.TokenType.NORMAL) for token, i in model["vocab"].items()
    }
    for added in data.get("added_tokens", []):
        content = added["content"]
        looks_special = content.startswith("<|") and content.endswith("|>")
        special = added.get("special") or looks_special
        kind = gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED
        by_id[added["id"]] = (content, kind)
    if max(by_id) >= vocab_size:
        raise UserError(f"{path}: token id {max(by_id)} >= config vocab_size {vocab_size}")
    tokens, types = [], []
    for i in range(vocab_size):
        token, kind = by_id.get(i, (f"[PAD{i}]", gguf.TokenType.UNUSED))
        tokens.append(token)
        types.append(int(kind))
    return tokens, types


def _has_qwen2_split(node: Any) -> bool:
    """Whether a tokenizer.json pre-tokenizer (nested in Sequences) splits with Qwen2's regex."""
    if isinstance(node, list):
        return any(_has_qwen2_split(item) for item in node)
    if not isinstance(node, dict):
        return False
    if (
        node.get("type") == "Split"
        and (node.get("pattern") or {}).get("Regex") == QWEN2_SPLIT_REGEX
    ):
        return True
    return _has_qwen2_split(node.get("pretokenizers"))


def add_metadata(
    writer: gguf.GGUFWriter,
    model_dir: Path,
    config: dict[str, Any],
    out_type: str,
    planned: list[PlannedTensor],
) -> None:
    """Architecture, tokenizer and chat-template keys, as llama.cpp's converter writes them."""
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    head_dim = int(config.get("head_dim") or hidden // heads)
    n_params = sum(math.prod(t.source.shape) for t in planned)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(model_dir.resolve().name)
    writer.add_size_label(gguf.size_label(n_params, n_params, 0, 0))
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(heads)
    writer.add_head_count_kv(int(config.get("num_key_value_heads") or heads))
    writer.add_rope_freq_base(rope_theta(config))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_file_type(_OUTPUT_TYPES[out_type][0])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    tokens, types = read_vocab(model_dir, int(config["vocab_size"]))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(TOKENIZER_PRE)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens))
    if not special.merges:
        raise UserError(f"{model_dir}/tokenizer.json has no BPE merges")
    if special.chat_template is None:
        raise UserError(f"{model_dir}: no chat template (tokenizer_config.json or .jinja)")
    special.add_to_gguf(writer, quiet=True)


def export_gguf(
    model_dir: Path, out_path: Path, out_type: str, on_progress: ProgressFn | None = None
) -> Path:
    """Write `out_path` (f32, f16, bf16 or q8_0) from the HF model in `model_dir`; returns it.

    The file is written as `<out_path>.partial` and renamed when complete, so an interrupted
    export never leaves a file that looks finished.
    """
    if out_type not in _OUTPUT_TYPES:
        raise UserError(f"export writes {', '.join(_OUTPUT_TYPES)}, not {out_type!r}")
    model_dir = Path(model_dir)
    config = read_config(model_dir)
    planned = plan_tensors(config, index_safetensors(model_dir), out_type)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")

    writer = gguf.GGUFWriter(partial, ARCH_NAME)
    try:
        add_metadata(writer, model_dir, config, out_type, planned)
        for tensor in planned:
            shape, dtype = tensor.stored_as
            writer.add_tensor_info(tensor.name, shape, dtype, tensor.nbytes, raw_dtype=tensor.qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        _write_data(writer, planned, on_progress)
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(partial, out_path)
    return out_path


def _write_data(
    writer: gguf.GGUFWriter, planned: list[PlannedTensor], on_progress: ProgressFn | None
) -> None:
    """Tensor data after the header, each aligned as the tensor-info offsets promise.

    Done here rather than with `GGUFWriter.write_tensor_data`, which needs each tensor whole in
    memory: a 151,936 x 2,048 embedding is 1.2 GB in f32.
    """
    assert writer.fout is not None
    fout = writer.fout[0]
    total, done = sum(t.nbytes for t in planned), 0
    writer.write_padding(fout, fout.tell())
    for tensor in planned:
        budget = CHUNK_BYTES if tensor.block == 1 else CHUNK_BYTES // QUANT_CHUNK_DIVISOR
        for chunk in _source_chunks(tensor.source, budget, tensor.block):
            data = _convert(chunk, tensor.source.dtype, tensor.qtype)
            fout.write(memoryview(data).cast("B"))
            done += data.nbytes
            if on_progress is not None:
                on_progress(done, total)
        writer.write_padding(fout, tensor.nbytes)
    fout.flush()


def _source_chunks(tensor: SourceTensor, budget: int, block: int) -> Iterator[np.ndarray]:
    """The tensor's elements, flat, at most `budget` bytes (and whole blocks) at a time."""
    dtype = _SOURCE_DTYPES[tensor.dtype]
    unit = dtype.itemsize * block
    step = max(unit, budget - budget % unit)
    with tensor.path.open("rb") as f:
        f.seek(tensor.offset)
        left = tensor.nbytes
        while left:
            raw = f.read(min(step, left))
            if not raw:
                raise UserError(f"{tensor.path}: ends inside tensor {tensor.name} (truncated)")
            left -= len(raw)
            yield np.frombuffer(raw, dtype=dtype)


def _convert(chunk: np.ndarray, source: str, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    """One flat chunk (whole blocks) from its safetensors dtype to the GGUF storage type.

    Same-type copies are byte-exact (bf16 stays bf16); otherwise via float32, which holds every
    bf16 and f16 value exactly, so f16 and q8_0 output equal the converter's bf16 -> f32 -> type.
    """
    if (source, qtype) in {("F32", _T.F32), ("F16", _T.F16), ("BF16", _T.BF16)}:
        return chunk
    if source == "BF16":
        widened = chunk.astype(np.uint32)
        widened <<= 16  # in place: one float32-sized buffer per chunk, not two
        f32 = widened.view(np.float32)
    else:
        f32 = chunk.astype(np.float32)
    return gguf.quants.quantize(f32, qtype)
