"""GGUF export time and peak memory for a model of Qwen3-1.7B's shapes: ours vs llama.cpp's.

The input is built once in `--work` (about 3.4 GB) and reused:

- weights: random, bf16 (Qwen3's published dtype), with Qwen3-1.7B's tensor names and shapes
  (28 layers, hidden 2,048, MLP 6,144, 16 query / 8 key-value heads of 128, vocabulary 151,936,
  tied embeddings: 1.72 B parameters), in two safetensors shards with an index, like the Hub
  checkpoint. Drawn from N(0, 0.02), norms at 1.
- tokenizer: a synthetic byte-level BPE of Qwen3's size, since the real one cannot be
  downloaded here: the 256 byte symbols, every 2-symbol merge (65,536), then 3-symbol merges up
  to 151,643 BPE tokens, plus Qwen3's 26 added tokens at Qwen3's ids (151,643-151,668); the
  exporter pads to 151,936 exactly as for the real model. Pipeline (NFC, Qwen2's split regex,
  byte-level) and chat template are the tiny model's, which are Qwen3's.

Each exporter runs in its own process, writing f16 (`--type`); wall time is measured by this
script, peak resident memory is the child's `ru_maxrss` from `os.wait4`. Page cache is not
dropped between runs: both read an input already cached by building it.

llama.cpp's converter is `convert_hf_to_gguf.py` (with its `conversion/` package and its own
`gguf-py`) from the llama-cpp-python sdist on PyPI, the llama.cpp that the installed binding
vendors (`pip download --no-deps --no-binary :all: llama-cpp-python==<installed version>`, or
`--sdist FILE`). It recognises pre-tokenizers by hashing a tokenizer's output on a fixed text,
which only real vocabularies match, so a 3-line wrapper declares the synthetic one "qwen2" by
replacing `TextModel.get_vocab_base_pre`; the script runs otherwise unmodified. The two files
are then compared tensor by tensor (type, shape, bytes) and key by key.

    .venv/bin/python bench/bench_gguf_export.py [--work DIR] [--type f16] [--sdist FILE]
        [--no-reference] [--keep]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from importlib import metadata
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from qmd_ft.bench import SHAPES
from qmd_ft.tiny_model import build_tiny_model, tensor_shapes

QWEN3_1_7B: dict[str, Any] = {k: v for k, v in SHAPES["qwen3-1.7b"].items() if k != "vocab_size"}
VOCAB_SIZE = SHAPES["qwen3-1.7b"]["vocab_size"]
BPE_TOKENS = 151_643
QWEN3_ADDED = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
]  # fmt: skip
"""Qwen3's added tokens in id order from 151,643; `<|…|>` ones are special."""

CHUNK = 1 << 24
"""Elements drawn and written at a time while building the weights."""

WRAPPER = """import runpy, sys
sys.path.insert(0, sys.argv[1].rsplit("/", 1)[0])
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "qwen2"
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
"""Runs convert_hf_to_gguf.py (argv[1]) with the synthetic tokenizer declared "qwen2"."""


def build_input(model: Path) -> Path:
    """Write the Qwen3-1.7B-shaped checkpoint into `model` unless a complete one is there."""
    done = model / ".complete"
    if done.is_file():
        return model
    shutil.rmtree(model, ignore_errors=True)
    model.mkdir(parents=True)
    _write_tokenizer(model)
    config = json.loads((model / "config.json").read_text())
    config.update(QWEN3_1_7B, vocab_size=VOCAB_SIZE, torch_dtype="bfloat16")
    config.update(bos_token_id=151_643, eos_token_id=151_645)
    (model / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    generation = {"bos_token_id": 151_643, "eos_token_id": [151_645, 151_643]}
    (model / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    _write_weights(model)
    done.touch()
    return model


def _write_tokenizer(model: Path) -> None:
    """The tiny model's files, its tokenizer's vocabulary replaced by a Qwen3-sized one."""
    from tokenizers import pre_tokenizers

    with tempfile.TemporaryDirectory() as tmp:
        tiny = build_tiny_model(Path(tmp))
        for name in ("config.json", "special_tokens_map.json"):
            shutil.copy(tiny / name, model / name)
        tokenizer = json.loads((tiny / "tokenizer.json").read_text())
        tok_config = json.loads((tiny / "tokenizer_config.json").read_text())

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: i for i, symbol in enumerate(alphabet)}
    merges: list[list[str]] = []
    pairs = ((a, b) for a in alphabet for b in alphabet)
    triples = ((a + b, c) for a in alphabet for b in alphabet for c in alphabet)
    for left, right in chain(pairs, triples):
        if len(vocab) == BPE_TOKENS:
            break
        vocab[left + right] = len(vocab)
        merges.append([left, right])
    tokenizer["model"]["vocab"], tokenizer["model"]["merges"] = vocab, merges
    added = []
    for i, token in enumerate(QWEN3_ADDED, start=BPE_TOKENS):
        special = token.startswith("<|")
        entry = {"content": token, "lstrip": False, "normalized": False, "rstrip": False}
        added.append({"id": i, **entry, "single_word": False, "special": special})
    tokenizer["added_tokens"] = added
    tok_config["added_tokens_decoder"] = {
        str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in added
    }
    tok_config["model_max_length"] = 131_072
    (model / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    (model / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")


def _write_weights(model: Path) -> None:
    """Two bf16 safetensors shards and their index, written a chunk at a time."""
    shapes = tensor_shapes(QWEN3_1_7B, VOCAB_SIZE)
    total = sum(math.prod(s) for _, s in shapes)
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[], []]
    seen = 0
    for name, shape in shapes:
        shards[0 if seen < total / 2 else 1].append((name, shape))
        seen += math.prod(shape)
    rng = np.random.default_rng(0)
    weight_map = {}
    for i, tensors in enumerate(shards, start=1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        weight_map.update({name: file for name, _ in tensors})
        _write_shard(model / file, tensors, rng)
    index = {"metadata": {"total_size": total * 2}, "weight_map": weight_map}
    (model / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def _write_shard(path: Path, tensors: list[tuple[str, tuple[int, ...]]], rng: Any) -> None:
    """One safetensors file: 8-byte header length, JSON header (space-padded), bf16 data."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in tensors:
        size = math.prod(shape) * 2
        header[name] = {
            "dtype": "BF16",
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for _, shape in tensors:
            left = math.prod(shape)
            while left:
                n = min(CHUNK, left)
                if len(shape) == 1:
                    bits = np.full(n, 0x3F80, dtype=np.uint16)  # 1.0 in bf16
                else:
                    x = rng.standard_normal(n, dtype=np.float32) * np.float32(0.02)
                    bits = (x.view(np.uint32) >> 16).astype(np.uint16)
                f.write(bits.tobytes())
                left -= n


def converter(work: Path, sdist: Path | None) -> Path:
    """llama.cpp's convert_hf_to_gguf.py with its package and gguf-py, from the sdist."""
    version = metadata.version("llama-cpp-python")
    root = work / f"llama.cpp-{version}"
    script = root / "convert_hf_to_gguf.py"
    if script.is_file():
        return script
    if sdist is None:
        download = work / "sdist"
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             f"llama-cpp-python=={version}", "-d", str(download)],
            check=True, capture_output=True,
        )  # fmt: skip
        sdist = next(download.glob("llama_cpp_python-*.tar.gz"))
    prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
    wanted = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            rel = member.name.removeprefix(prefix)
            if member.name.startswith(prefix) and rel.startswith(wanted) and member.isfile():
                member.name = rel
                tar.extract(member, root, filter="data")
    return script


def measure(command: list[str], log: Path) -> dict[str, Any]:
    """Wall seconds and peak RSS (MiB) of one child process; its output goes to `log`."""
    start = time.perf_counter()
    with log.open("wb") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    child.returncode = code  # reaped by wait4; keeps Popen from waiting again
    if code != 0:
        sys.exit(f"{command[:3]} failed ({code}); see {log}")
    return {"seconds": round(seconds, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024)}


def compare(ours: Path, theirs: Path) -> dict[str, Any]:
    """Tensors differing in type, shape or bytes, and metadata keys that differ."""
    from gguf import GGUFReader

    a, b = GGUFReader(ours), GGUFReader(theirs)
    ta, tb = {t.name: t for t in a.tensors}, {t.name: t for t in b.tensors}
    differ = sorted(
        n
        for n in ta.keys() & tb.keys()
        if ta[n].tensor_type != tb[n].tensor_type
        or list(ta[n].shape) != list(tb[n].shape)
        or not np.array_equal(ta[n].data, tb[n].data)
    )
    fa = {k: f.contents() for k, f in a.fields.items() if not k.startswith("GGUF.")}
    fb = {k: f.contents() for k, f in b.fields.items() if not k.startswith("GGUF.")}
    return {
        "tensors_only_ours": sorted(ta.keys() - tb.keys()),
        "tensors_only_theirs": sorted(tb.keys() - ta.keys()),
        "tensors_differing": differ,
        "keys_only_ours": sorted(fa.keys() - fb.keys()),
        "keys_only_theirs": sorted(fb.keys() - fa.keys()),
        "keys_differing": sorted(k for k in fa.keys() & fb.keys() if fa[k] != fb[k]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="Where input and outputs go (default: temp)")
    parser.add_argument("--type", default="f16", choices=["f32", "f16", "bf16", "q8_0"])
    parser.add_argument("--sdist", type=Path, help="llama-cpp-python sdist already downloaded")
    parser.add_argument("--no-reference", action="store_true", help="Skip llama.cpp's script")
    parser.add_argument("--keep", action="store_true", help="Keep --work (default: remove)")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-gguf-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        model = build_input(work / "qwen3-1.7b-shaped")
        input_bytes = sum(p.stat().st_size for p in model.glob("*.safetensors"))
        print(f"input: {input_bytes / 1e9:.2f} GB bf16 in {time.perf_counter() - start:.0f} s")
        results: dict[str, Any] = {"input_gb": round(input_bytes / 1e9, 2), "type": args.type}

        ours = work / f"ours-{args.type}.gguf"
        code = (
            "import sys; from pathlib import Path; from qmd_ft.gguf.export import export_gguf; "
            "export_gguf(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])"
        )
        cmd = [sys.executable, "-c", code, str(model), str(ours), args.type]
        results["qmd_ft"] = measure(cmd, work / "ours.log")
        print(f"qmd-ft export_gguf: {results['qmd_ft']}")

        if not args.no_reference:
            script = converter(work, args.sdist)
            wrapper = work / "run_convert.py"
            wrapper.write_text(WRAPPER)
            theirs = work / f"llama-cpp-{args.type}.gguf"
            cmd = [sys.executable, str(wrapper), str(script), str(model)]
            cmd += ["--outtype", args.type, "--outfile", str(theirs)]
            results["llama_cpp_convert"] = measure(cmd, work / "theirs.log")
            print(f"llama.cpp convert_hf_to_gguf.py: {results['llama_cpp_convert']}")
            results["comparison"] = compare(ours, theirs)
        print(json.dumps(results, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
