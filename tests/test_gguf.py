"""GGUF export, quantization, verification, Modelfile and the gguf eval backend (tiny model, CPU).

Two exports are built per module and shared: the types the pure-Python writer makes (f32, f16,
bf16, q8_0), unverified, which every machine can run; and every type, verified, which needs
llama-cpp-python (the optional `gguf-runtime` extra): tests that need it skip, saying how to add
it, and the tests at the end check the one-line refusals where it is missing.

Logits are compared with transformers
in float32 with llama.cpp's KV cache in f32 too, so the numbers measure the file's precision.
Bounds (max |logit difference| on the tiny model, measured): f32 < 1e-5 (measured ~6e-7),
f16 < 5e-3 (measured ~7e-4), bf16 < 3e-2 (measured ~6e-3). Each bound sits below the next
coarser type's error, so an f32 file holding f16-rounded weights (~8e-4) fails the f32 bound.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("gguf")
pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

import gguf  # noqa: E402
import numpy as np  # noqa: E402

from qmd_ft.backends.gguf import BACKEND  # noqa: E402
from qmd_ft.config import EvalConfig  # noqa: E402
from qmd_ft.errors import UserError  # noqa: E402
from qmd_ft.gguf import ALL_TYPES, WRITTEN_TYPES, parse_types  # noqa: E402
from qmd_ft.gguf import build as build_mod  # noqa: E402
from qmd_ft.gguf import export as export_mod  # noqa: E402
from qmd_ft.gguf import quantize as quantize_mod  # noqa: E402
from qmd_ft.gguf.build import BuildResult, build  # noqa: E402
from qmd_ft.gguf.modelfile import template  # noqa: E402
from qmd_ft.gguf.runtime import load, missing_runtime, runtime_available  # noqa: E402
from qmd_ft.gguf.verify import Reference, reference  # noqa: E402
from qmd_ft.manifest import file_sha256  # noqa: E402
from qmd_ft.prompt import ENDOFTEXT, IM_END, IM_START, THINK_OPEN, render_prompt  # noqa: E402
from qmd_ft.reward import score  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LOGIT_BOUND = {"f32": 1e-5, "f16": 5e-3, "bf16": 3e-2}

NO_RUNTIME = missing_runtime("this test")
needs_runtime = pytest.mark.skipif(not runtime_available(), reason=NO_RUNTIME)


@pytest.fixture(scope="module")
def written(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """The types the pure-Python writer makes, unverified: what works without llama.cpp."""
    return build(
        tiny_model_dir, tmp_path_factory.mktemp("gguf-written"), list(WRITTEN_TYPES), False
    )


@pytest.fixture(scope="module")
def exported(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """Every GGUF type of the tiny model, verified (the `export gguf` code path)."""
    if not runtime_available():
        pytest.skip(NO_RUNTIME)
    return build(tiny_model_dir, tmp_path_factory.mktemp("gguf"), list(ALL_TYPES))


@pytest.fixture(scope="module")
def ref(tiny_model_dir: Path) -> Reference:
    return reference(tiny_model_dir)


@pytest.fixture
def no_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    """llama-cpp-python made unimportable, as on a default install."""
    monkeypatch.setitem(sys.modules, "llama_cpp", None)


def _path(result: BuildResult, kind: str) -> Path:
    return next(f.path for f in result.files if f.gguf_type == kind)


def _forced_logits(path: Path, sequence: list[int]) -> np.ndarray:
    llm = load(path, n_ctx=256, logits_all=True, full_precision_cache=True)
    try:
        llm.eval(sequence)
        return np.array(llm.scores[: len(sequence)])
    finally:
        llm.close()


def _field(reader: gguf.GGUFReader, key: str) -> object:
    field = reader.get_field(key)
    assert field is not None, key
    return field.contents()


def test_export_writes_every_type_verified_with_manifest(exported: BuildResult) -> None:
    assert [f.gguf_type for f in exported.files] == list(ALL_TYPES)
    assert all(f.status == "verified" for f in exported.files), [
        (f.path.name, f.verification and f.verification.failure) for f in exported.files
    ]
    manifest = json.loads(exported.manifest.read_text())
    assert manifest["kind"] == "gguf"
    assert manifest["modelfile"]["from"] == _path(exported, "q4_k_m").name
    for entry, f in zip(manifest["files"], exported.files, strict=True):
        assert entry["file"] == f.path.name and entry["verified"] is True
        assert entry["bytes"] == f.path.stat().st_size
        assert entry["sha256"] == file_sha256(f.path)
    # Nothing but the requested files, the Modelfile and the manifest (no temp files).
    names = {p.name for p in exported.out_dir.iterdir()}
    assert names == {f.path.name for f in exported.files} | {"Modelfile", "manifest.json"}


def test_metadata_matches_config_and_tokenizer(written: BuildResult, tiny_model_dir: Path) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    tok_config = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    reader = gguf.GGUFReader(_path(written, "f16"))
    expected = {
        "general.architecture": "qwen3",
        "general.file_type": int(gguf.LlamaFileType.MOSTLY_F16),
        "qwen3.context_length": config["max_position_embeddings"],
        "qwen3.embedding_length": config["hidden_size"],
        "qwen3.feed_forward_length": config["intermediate_size"],
        "qwen3.block_count": config["num_hidden_layers"],
        "qwen3.attention.head_count": config["num_attention_heads"],
        "qwen3.attention.head_count_kv": config["num_key_value_heads"],
        "qwen3.attention.key_length": config["head_dim"],
        "qwen3.attention.value_length": config["head_dim"],
        "qwen3.rope.freq_base": config["rope_theta"],
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "qwen2",
        "tokenizer.ggml.add_bos_token": False,
        "tokenizer.chat_template": tok_config["chat_template"],
    }
    for key, value in expected.items():
        assert _field(reader, key) == value, key
    assert _field(reader, "qwen3.attention.layer_norm_rms_epsilon") == pytest.approx(1e-6)
    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type")
    assert isinstance(tokens, list) and isinstance(types, list)
    assert len(tokens) == config["vocab_size"]
    im_end = tokens.index(IM_END)
    assert _field(reader, "tokenizer.ggml.eos_token_id") == im_end
    assert _field(reader, "tokenizer.ggml.padding_token_id") == tokens.index(ENDOFTEXT)
    assert types[tokens.index(IM_START)] == gguf.TokenType.CONTROL
    assert types[tokens.index(THINK_OPEN)] == gguf.TokenType.USER_DEFINED
    assert len(_field(reader, "tokenizer.ggml.merges")) > 0  # type: ignore[arg-type]
    names = {t.name: t.tensor_type.name for t in reader.tensors}
    assert "output.weight" not in names  # tied: llama.cpp reuses token_embd
    assert names["blk.0.attn_q_norm.weight"] == "F32" and names["blk.0.attn_q.weight"] == "F16"


@needs_runtime
def test_no_verify_writes_unverified_entries(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = build(tiny_model_dir, tmp_path, ["q4_k_m"], verify=False)
    assert [f.status for f in result.files] == ["not verified"]
    manifest = json.loads(result.manifest.read_text())
    assert manifest["files"][0]["verified"] is None and manifest["verification"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["Modelfile", "manifest.json", result.files[0].path.name]
    )  # the f32 file quantized from is removed


def test_q8_0_is_written_in_blocks_of_the_source(
    written: BuildResult, tiny_model_dir: Path
) -> None:
    """Every matrix is Q8_0 (norms stay f32) and dequantizes to the source weights within half a
    quantization step of its block (plus the rounding of the block's f16 scale, times 127); the
    file says it is MOSTLY_Q8_0."""
    from safetensors.numpy import load_file

    reader = gguf.GGUFReader(_path(written, "q8_0"))
    assert _field(reader, "general.file_type") == int(gguf.LlamaFileType.MOSTLY_Q8_0)
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert set(types.values()) == {"Q8_0", "F32"} and types["blk.0.attn_norm.weight"] == "F32"
    source = load_file(tiny_model_dir / "model.safetensors")["model.layers.0.mlp.up_proj.weight"]
    tensor = next(t for t in reader.tensors if t.name == "blk.0.ffn_up.weight")
    values = gguf.quants.dequantize(np.asarray(tensor.data), gguf.GGMLQuantizationType.Q8_0)
    blocks = source.astype(np.float32).reshape(-1, 32)
    step = np.abs(blocks).max(axis=1, keepdims=True) / 127
    error = np.abs(values.reshape(-1, 32) - blocks)
    assert (error <= step * (0.5 + 127 * 2**-11)).all() and error.max() > 0


def test_padded_vocab_gets_unused_tokens(tiny_model_dir: Path) -> None:
    tokens, types = export_mod.read_vocab(tiny_model_dir, 1030)
    assert tokens[-1] == "[PAD1029]" and types[-1] == gguf.TokenType.UNUSED
    with pytest.raises(UserError, match="vocab_size"):
        export_mod.read_vocab(tiny_model_dir, 1000)


@pytest.mark.parametrize("kind", ["f32", "f16", "bf16"])
def test_logits_match_transformers(exported: BuildResult, ref: Reference, kind: str) -> None:
    sequence = ref.prompt_ids + ref.completion_ids
    logits = _forced_logits(_path(exported, kind), sequence)
    assert np.abs(logits - ref.logits).max() < LOGIT_BOUND[kind]


@pytest.mark.parametrize("kind", ["f32", "f16", "bf16"])
def test_greedy_parity_and_tokenization(exported: BuildResult, kind: str) -> None:
    verification = next(f.verification for f in exported.files if f.gguf_type == kind)
    assert verification is not None
    checks = {c.name: c for c in verification.checks}
    assert checks["tokens"].ok and checks["parity"].ok and checks["metadata"].ok
    assert verification.metrics["greedy_identical"] is True


@pytest.mark.parametrize(
    ("kind", "main_type", "min_agreement"),
    [("q8_0", "Q8_0", 0.9), ("q4_k_m", "Q5_0", 0.6), ("q5_k_m", "Q5_1", 0.6)],
)
def test_quantized_files_load_and_generate(
    exported: BuildResult, kind: str, main_type: str, min_agreement: float
) -> None:
    """The tiny model's rows (128) are not a multiple of 256: K-quants fall back per tensor
    (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0), the files stay valid and load, and the
    manifest records what each file really holds."""
    f = next(f for f in exported.files if f.gguf_type == kind)
    assert f.verification is not None and f.verification.ok
    types = f.verification.tensor_types
    assert types[main_type] > 0 and "Q4_K" not in types and "Q5_K" not in types
    assert types["F32"] == 17  # the norms, never quantized
    checks = {c.name: c for c in f.verification.checks}
    assert checks["generate"].ok
    assert checks["score"].ok is None and "skipped" in checks["score"].detail  # random weights
    assert f.verification.metrics["top1_agreement"] >= min_agreement
    assert f.verification.metrics["completion"]


@needs_runtime
def test_k_quants_on_256_wide_rows(tmp_path: Path, repo_root: Path) -> None:
    """With Qwen3-like row sizes (multiples of 256) the real K-quant mixes are written."""
    from qmd_ft.tiny_model import build_tiny_model

    model = build_tiny_model(
        tmp_path / "wide",
        data_dir=repo_root / "data",
        hidden_size=256,
        intermediate_size=768,
        num_attention_heads=8,
        num_hidden_layers=2,
    )
    result = build(model, tmp_path / "gguf", ["q4_k_m", "q5_k_m"])
    assert not result.failed
    q4, q5 = (f.verification.tensor_types for f in result.files if f.verification)
    assert q4["Q4_K"] > 0 and q4["Q6_K"] > 0 and "Q5_0" not in q4
    assert q5["Q5_K"] > 0 and q5["Q6_K"] > 0 and "Q5_1" not in q5


@needs_runtime
def test_verification_failure_marks_file_exits_1_keeps_files(
    tiny_model_dir: Path,
    ref: Reference,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A reference that scores 90% makes the random quantized file fail the score margin."""
    meaningful = dataclasses.replace(ref, score=90.0)
    monkeypatch.setattr(build_mod, "reference", lambda model_dir: meaningful)
    out = tmp_path / "out"
    args = ["export", "gguf", "--model", str(tiny_model_dir), "--quant", "f16,q8_0", "--out"]
    monkeypatch.setattr(sys, "argv", ["qmd-ft", *args, str(out)])
    from qmd_ft.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    f16, q8 = (f"{tiny_model_dir.resolve().name}-{t}.gguf" for t in ("F16", "Q8_0"))
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: verification failed for {q8} ({q8}: score: ")
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert {f["file"]: f["verified"] for f in manifest["files"]} == {f16: True, q8: False}
    assert (out / q8).is_file() and (out / f16).is_file()
    assert f"FROM ./{f16}" in (out / "Modelfile").read_text()  # not the failed file


def test_modelfile_matches_prompt_format(written: BuildResult) -> None:
    text = written.modelfile.read_text()
    lines = text.splitlines()
    assert f"FROM ./{_path(written, 'q8_0').name}" in lines
    assert 'PARAMETER stop "<|im_end|>"' in lines and 'PARAMETER stop "<|endoftext|>"' in lines
    assert "PARAMETER temperature 0" in lines
    assert f'TEMPLATE """{template()}"""' in text
    query = "rust error handling"
    assert template().replace("{{ .Prompt }}", query) == render_prompt(query)


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qmd_ft", *args], cwd=ROOT, capture_output=True, text=True
    )


def test_corrupt_and_truncated_gguf_reported_in_one_line(
    exported: BuildResult, tmp_path: Path
) -> None:
    good = _path(exported, "f16")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a model at all" * 100)
    header = tmp_path / "bad-header.gguf"
    data = bytearray(good.read_bytes())
    data[8:24] = b"\xff" * 16  # tensor and key-value counts
    header.write_bytes(bytes(data))
    expected = {
        truncated: "not within the file bounds",
        garbage: "not a GGUF file",
        header: "llama.cpp cannot load it",
    }
    for path, reason in expected.items():
        r = _run_cli("export", "verify", str(path))
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr + r.stdout
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {path}: load: "), r.stderr
        assert reason in lines[0]
        with pytest.raises(UserError, match=reason):
            BACKEND.generator(str(path), [], EvalConfig())
    r = _run_cli("export", "verify", str(good))
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("kind", ["f16", "q8_0"])
def test_chunked_streaming_writes_identical_bytes(
    tiny_model_dir: Path,
    written: BuildResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    """Tensors far larger than a chunk (the real model's) go through the same code path; an odd
    chunk size still cuts Q8_0 input at whole blocks (its budget, 4100 bytes, is 32 blocks of 32
    float32 and one float more)."""
    monkeypatch.setattr(export_mod, "CHUNK_BYTES", 8 * 4100 + 2)
    small = export_mod.export_gguf(tiny_model_dir, tmp_path / "small-chunks.gguf", kind)
    assert file_sha256(small) == file_sha256(_path(written, kind))


def test_bf16_source_exports_like_llama_cpp(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Qwen3 ships bf16: bf16 output copies its bits, f16 output is float16(float32(bf16))."""
    from safetensors.torch import load_file, save_file

    model = tmp_path / "bf16-model"
    shutil.copytree(tiny_model_dir, model)
    weights = load_file(model / "model.safetensors")
    bf16 = {name: t.to(torch.bfloat16) for name, t in weights.items()}
    save_file(bf16, model / "model.safetensors", metadata={"format": "pt"})
    assert build_mod.lossless_type(export_mod.index_safetensors(model)) == "bf16"
    as_bf16 = gguf.GGUFReader(export_mod.export_gguf(model, tmp_path / "b.gguf", "bf16"))
    as_f16 = gguf.GGUFReader(export_mod.export_gguf(model, tmp_path / "h.gguf", "f16"))
    source = bf16["model.layers.0.mlp.up_proj.weight"]
    t_bf16 = next(t for t in as_bf16.tensors if t.name == "blk.0.ffn_up.weight")
    t_f16 = next(t for t in as_f16.tensors if t.name == "blk.0.ffn_up.weight")
    assert t_bf16.tensor_type.name == "BF16"
    assert bytes(t_bf16.data.tobytes()) == source.view(torch.int16).numpy().tobytes()
    expected = source.float().numpy().astype(np.float16)
    assert np.array_equal(np.asarray(t_f16.data).reshape(expected.shape), expected)


def test_export_refuses_what_it_cannot_write(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "llama"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(UserError, match="not a Qwen3 model"):
        export_mod.export_gguf(model, tmp_path / "x.gguf", "f16")
    scaled = {**config, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}
    (model / "config.json").write_text(json.dumps(scaled))
    with pytest.raises(UserError, match="rope scaling 'yarn'"):
        export_mod.export_gguf(model, tmp_path / "x.gguf", "f16")
    (model / "config.json").write_text(json.dumps(config))
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(UserError, match="truncated or corrupt"):
        export_mod.export_gguf(model, tmp_path / "x.gguf", "f16")
    assert not list(tmp_path.glob("x.gguf*"))


def test_parse_types() -> None:
    assert parse_types("F16, q4_k_m,f16") == ["f16", "q4_k_m"]
    with pytest.raises(UserError, match="unknown GGUF type 'q2_k'"):
        parse_types("f16,q2_k")
    with pytest.raises(UserError, match="no GGUF type"):
        parse_types(" , ")


def test_gguf_backend_generates_greedy_like_verify(exported: BuildResult) -> None:
    f = next(f for f in exported.files if f.gguf_type == "f16")
    assert f.verification is not None
    assert BACKEND.name == "gguf" and BACKEND.available() == (True, "")
    generate = BACKEND.generator(str(f.path), [], EvalConfig(max_new_tokens=64))
    [text] = generate([render_prompt("how to configure authentication")])
    assert text == f.verification.metrics["completion"].strip()  # eval text is trimmed


def test_eval_picks_gguf_backend_for_gguf_files(exported: BuildResult, tmp_path: Path) -> None:
    """`qmd-ft eval --model FILE.gguf` (backend auto) generates and scores through llama.cpp."""
    from qmd_ft.evaluation import run_eval

    queries = tmp_path / "queries.txt"
    queries.write_text("# Technical\nrust error handling\nnginx reverse proxy\n")
    path = str(_path(exported, "q4_k_m"))
    results = run_eval(path, [], queries, EvalConfig(max_new_tokens=16))
    assert results.need_summary().n == 2
    assert results.provenance.backend == "gguf"


def test_gguf_backend_refuses_training_and_adapters(written: BuildResult) -> None:
    for call in (
        lambda: BACKEND.sft(None),  # type: ignore[arg-type]
        lambda: BACKEND.grpo(None),  # type: ignore[arg-type]
        lambda: BACKEND.merge("base", [], Path("out")),
    ):
        with pytest.raises(UserError, match="inference"):
            call()
    with pytest.raises(UserError, match="adapters"):
        BACKEND.generator(str(_path(written, "q8_0")), ["outputs/sft"], EvalConfig())
    with pytest.raises(UserError, match=r"needs a \.gguf file"):
        BACKEND.generator("outputs/merged", [], EvalConfig())


class Scripted:
    """A loaded GGUF model whose sampler is replaced by a fixed token script (the rest is real)."""

    def __init__(self, llm: Any, script: list[int]):
        self.llm, self.script = llm, script

    def __getattr__(self, name: str) -> Any:
        return getattr(self.llm, name)

    def generate(self, tokens: list[int], **_: Any) -> Iterator[int]:
        yield from self.script


def test_gguf_eval_text_keeps_leaked_special_tokens_and_stops_like_the_others(
    exported: BuildResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leaked `<|im_start|>` must reach the rubric (llama.cpp's own completion text drops it),
    the text ends at the first stop token or after max_new_tokens, think blocks are removed."""
    from qmd_ft.gguf import runtime

    path = str(_path(exported, "f32"))
    llm = runtime.load(Path(path), n_ctx=256)
    ids = partial(llm.tokenize, add_bos=False, special=True)
    leak = "<think>\nplan\n</think>\n\nlex: auth config\n<|im_start|>assistant\nvec: auth"
    script = [*ids(leak.encode()), *ids(IM_END.encode()), *ids(b"lex: after the stop")]
    real_load = runtime.load
    monkeypatch.setattr(runtime, "load", lambda *a, **k: Scripted(real_load(*a, **k), script))

    [text] = BACKEND.generator(path, [], EvalConfig(max_new_tokens=200))([render_prompt("auth")])
    assert text == "lex: auth config\n<|im_start|>assistant\nvec: auth"
    assert score("auth", text).rating == "Failed"  # chat template leakage
    [cut] = BACKEND.generator(path, [], EvalConfig(max_new_tokens=3))([render_prompt("auth")])
    assert cut == llm.detokenize(script[:3], special=True).decode().strip()


@needs_runtime
def test_q8_0_is_byte_identical_to_llama_cpp_quantizer(
    written: BuildResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pure-Python Q8_0 holds exactly the tensors llama.cpp's own quantizer makes from the
    lossless file (same types, same bytes), so dropping the quantizer for Q8_0 changed nothing."""
    monkeypatch.setitem(quantize_mod.FTYPES, "q8_0", "LLAMA_FTYPE_MOSTLY_Q8_0")
    theirs = quantize_mod.quantize(_path(written, "f32"), tmp_path / "llama-q8_0.gguf", "q8_0")
    ours = {t.name: t for t in gguf.GGUFReader(_path(written, "q8_0")).tensors}
    for tensor in gguf.GGUFReader(theirs).tensors:
        mine = ours.pop(tensor.name)
        assert mine.tensor_type == tensor.tensor_type, tensor.name
        assert bytes(mine.data.tobytes()) == bytes(tensor.data.tobytes()), tensor.name
    assert not ours


def _cli_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> str:
    """The CLI's stderr for `args`, which must exit 1 with one line and no traceback."""
    from qmd_ft.cli import main

    monkeypatch.setattr(sys, "argv", ["qmd-ft", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


INSTALL = "uv pip install -e '.[gguf-runtime]' or pip install -e '.[gguf-runtime]'"


@pytest.mark.usefixtures("no_runtime")
def test_without_runtime_export_writes_q8_0_and_refuses_the_rest_before_writing(
    tiny_model_dir: Path,
    written: BuildResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """f16 and q8_0 unverified need nothing compiled; K-quants and verification stop at once,
    saying in one line what needs llama-cpp-python and how to add it."""
    result = build(tiny_model_dir, tmp_path / "ok", ["f16", "q8_0"], verify=False)
    assert [f.status for f in result.files] == ["not verified"] * 2
    assert [f.sha256 for f in result.files] == [
        f.sha256 for f in written.files if f.gguf_type in ("f16", "q8_0")
    ]
    with pytest.raises(UserError, match=r"^quantizing to q4_k_m needs llama-cpp-python"):
        build(tiny_model_dir, tmp_path / "k", ["f16", "q4_k_m"], verify=False)
    with pytest.raises(UserError, match=r"^verifying GGUF files needs .*; or skip verification"):
        build(tiny_model_dir, tmp_path / "v", ["f16"])
    assert not (tmp_path / "k").exists() and not (tmp_path / "v").exists()

    model, out = str(tiny_model_dir), str(tmp_path / "cli")
    err = _cli_error(monkeypatch, capsys, "export", "gguf", "--model", model, "--out", out)
    assert err.startswith("error: quantizing to q4_k_m, q5_k_m needs llama-cpp-python")
    assert err.endswith(INSTALL)
    assert not list((tmp_path / "cli").glob("*.gguf*"))
    err = _cli_error(monkeypatch, capsys, "export", "verify", str(_path(written, "f16")))
    assert err == f"error: {missing_runtime('verifying GGUF files')}"


@pytest.mark.usefixtures("no_runtime")
def test_without_runtime_gguf_eval_says_how_to_add_it(written: BuildResult, tmp_path: Path) -> None:
    from qmd_ft.backend import get_backend
    from qmd_ft.evaluation import run_eval

    ok, why = BACKEND.available()
    assert not ok and why == missing_runtime("the gguf eval backend") and why.endswith(INSTALL)
    with pytest.raises(UserError, match=r"^backend 'gguf' is not usable here: the gguf eval"):
        get_backend("gguf")
    queries = tmp_path / "queries.txt"
    queries.write_text("# Technical\nrust error handling\n")
    with pytest.raises(UserError, match="gguf-runtime"):
        run_eval(str(_path(written, "q8_0")), [], queries, EvalConfig(max_new_tokens=4))


@pytest.mark.usefixtures("no_runtime")
def test_without_runtime_a_pipeline_with_k_quants_stops_before_training(tmp_path: Path) -> None:
    from qmd_ft.pipeline import build_pipeline

    overrides = [f"pipeline.out={tmp_path / 'run'}", f"publish.registry={tmp_path / 'reg'}"]
    pipe = build_pipeline(ROOT / "configs/pipeline.yaml", overrides, "cuda")
    assert "q4_k_m" in pipe.cfg.export.quants
    ran: list[str] = []
    with pytest.raises(UserError, match=r"^quantizing to q4_k_m, q5_k_m needs llama-cpp-python"):
        pipe.run(pipe.cfg.pipeline.stages, lambda result: ran.append(result.name))
    assert ran == [] and not (tmp_path / "run").exists()
