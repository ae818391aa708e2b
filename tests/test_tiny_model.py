"""The tiny Qwen3 model: deterministic, fast, and loadable by every backend and exporter."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from qmd_ft.prompt import (
    ENDOFTEXT,
    IM_END,
    SPECIAL_TOKENS,
    THINK_CLOSE,
    THINK_OPEN,
    messages,
    render_completion,
    render_example,
    render_prompt,
    user_message,
)

QUERIES = (
    "how to configure authentication",
    "  Marie Curie discoveries ",
    "café près de la gare 東京 emoji 🚀",
    "what is base jumping? /only:hyde",
)
COMPLETION = "hyde: A café in Tōkyō.\nlex: cafe tokyo\nvec: where to find a café in Tokyo"
EMPTY_THINK = f"{THINK_OPEN}\n\n{THINK_CLOSE}\n\n"
MODEL_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
}


def _hashes(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


def _snapshot_data(repo_root: Path, dest: Path) -> Path:
    """Copy data/*.jsonl and evals/queries.txt: other tools may rewrite them mid-test."""
    (dest / "data").mkdir(parents=True)
    (dest / "evals").mkdir()
    for path in (repo_root / "data").glob("*.jsonl"):
        shutil.copy(path, dest / "data" / path.name)
    if (repo_root / "evals" / "queries.txt").is_file():
        shutil.copy(repo_root / "evals" / "queries.txt", dest / "evals" / "queries.txt")
    return dest / "data"


@pytest.fixture
def build() -> Callable[..., Path]:
    """`build_tiny_model`, skipping the test where its libraries are not installed."""
    for module in ("numpy", "safetensors", "tokenizers"):
        pytest.importorskip(module)
    from qmd_ft.tiny_model import build_tiny_model

    return build_tiny_model


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    """The tiny model's tokenizer as transformers loads it (what backends and TRL use)."""
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(tiny_model_dir)


def test_same_seed_gives_identical_files(
    tmp_path: Path, repo_root: Path, build: Callable[..., Path]
) -> None:
    data_dir = _snapshot_data(repo_root, tmp_path / "project")
    first = _hashes(build(tmp_path / "a", seed=0, data_dir=data_dir))
    second = _hashes(build(tmp_path / "b", seed=0, data_dir=data_dir))
    other_seed = _hashes(build(tmp_path / "c", seed=1, data_dir=data_dir))

    assert set(first) == MODEL_FILES
    assert first == second
    assert other_seed["model.safetensors"] != first["model.safetensors"]
    assert {k: v for k, v in other_seed.items() if k != "model.safetensors"} == {
        k: v for k, v in first.items() if k != "model.safetensors"
    }


def test_build_takes_seconds(tmp_path: Path, repo_root: Path, build: Callable[..., Path]) -> None:
    start = time.perf_counter()
    build(tmp_path / "model", data_dir=repo_root / "data")
    assert time.perf_counter() - start < 10


def test_package_imports_without_ml_libraries() -> None:
    heavy = ("torch", "transformers", "tokenizers", "numpy", "safetensors", "mlx")
    code = f"import sys, qmd_ft.tiny_model; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_builtin_corpus_fills_the_vocabulary_without_data(
    tmp_path: Path, build: Callable[..., Path]
) -> None:
    out = build(tmp_path / "model", data_dir=tmp_path / "no-data")
    saved = json.loads((out / "tokenizer.json").read_text())
    assert len(saved["model"]["vocab"]) + len(saved["added_tokens"]) == 1024


def test_shape_overrides_and_bad_arguments(tmp_path: Path, build: Callable[..., Path]) -> None:
    from qmd_ft.tiny_model import TINY_SHAPE

    out = build(
        tmp_path / "model", data_dir=tmp_path / "no-data", vocab_size=512, num_hidden_layers=2
    )
    config = json.loads((out / "config.json").read_text())
    assert config["num_hidden_layers"] == config["max_window_layers"] == 2
    assert config["vocab_size"] == 512
    assert config["hidden_size"] == TINY_SHAPE["hidden_size"]
    saved = json.loads((out / "tokenizer.json").read_text())
    assert len(saved["model"]["vocab"]) + len(saved["added_tokens"]) == 512

    with pytest.raises(TypeError, match="hidden_dim"):
        build(tmp_path / "bad", hidden_dim=64)
    with pytest.raises(ValueError, match="vocab_size"):
        build(tmp_path / "bad", vocab_size=261)
    for seed in (-1, 2**32):
        with pytest.raises(ValueError, match="seed must be between 0 and 4294967295"):
            build(tmp_path / "bad", seed=seed)
    assert not (tmp_path / "bad").exists()


def test_cli_refuses_a_bad_seed_or_a_file_as_output_before_writing(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "qmd_ft", "make-tiny-model", str(tmp_path / "m"), "--seed", "-1"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "--seed" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "m").exists()
    (tmp_path / "f").write_text("")
    r = subprocess.run(
        [sys.executable, "-m", "qmd_ft", "make-tiny-model", str(tmp_path / "f")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and r.stderr.strip() == (
        f"error: {tmp_path / 'f'}: exists and is not a directory; give a directory to write into"
    )


def test_training_texts_render_data_and_skip_broken_lines(tmp_path: Path) -> None:
    from qmd_ft.tiny_model import BUILTIN_EXAMPLES, training_texts

    (tmp_path / "data").mkdir()
    (tmp_path / "evals").mkdir()
    (tmp_path / "data" / "a.jsonl").write_text(
        '{"input": "rust traits", "output": "lex: rust trait"}\n'
        '["not", "an", "object"]\n'
        '{"input": "no output"}\n' + "[" * 100_000 + "]" * 100_000 + "\n"
        '{"input": "cut off mid-wri',
        encoding="utf-8",
    )
    (tmp_path / "evals" / "queries.txt").write_text("# comment\n\nsql joins\n", encoding="utf-8")

    texts = training_texts(tmp_path / "data")

    builtin = [render_example(q, c) for q, c in BUILTIN_EXAMPLES]
    assert texts == [
        *builtin,
        render_example("rust traits", "lex: rust trait"),
        render_prompt("sql joins"),
    ]


def test_loads_in_transformers_and_runs_forward(tiny_model_dir: Path, tokenizer) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from qmd_ft.tiny_model import TINY_SHAPE, tensor_shapes

    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not info["mismatched_keys"]
    assert model.config.model_type == "qwen3" and model.dtype == torch.float32
    expected = sum(torch.Size(shape).numel() for _, shape in tensor_shapes(TINY_SHAPE, 1024))
    assert model.num_parameters() == expected

    ids = tokenizer(render_prompt(QUERIES[0]), return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits
        generated = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert logits.shape == (1, ids["input_ids"].shape[1], 1024)
    assert torch.isfinite(logits).all()
    assert generated.shape[1] <= ids["input_ids"].shape[1] + 4
    assert model.generation_config.eos_token_id == [
        tokenizer.convert_tokens_to_ids(IM_END),
        tokenizer.convert_tokens_to_ids(ENDOFTEXT),
    ]


def test_untied_override_loads_in_transformers(tmp_path: Path, build: Callable[..., Path]) -> None:
    transformers = pytest.importorskip("transformers")
    out = build(
        tmp_path / "model",
        data_dir=tmp_path / "no-data",
        num_hidden_layers=1,
        tie_word_embeddings=False,
    )
    model, info = transformers.AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()


def test_special_tokens_are_single_ids_after_the_vocabulary(tokenizer) -> None:
    size = len(tokenizer)
    assert size == 1024
    for offset, token in enumerate(SPECIAL_TOKENS):
        ids = tokenizer.encode(token, add_special_tokens=False)
        assert ids == [size - len(SPECIAL_TOKENS) + offset]
        assert tokenizer.decode(ids) == token
    assert tokenizer.eos_token == IM_END and tokenizer.pad_token == ENDOFTEXT
    assert tokenizer.bos_token is None
    # As in Qwen3: the think tags are whole tokens but not "special", so they survive skipping.
    assert tokenizer.convert_tokens_to_ids(THINK_OPEN) not in tokenizer.all_special_ids
    text = f"{THINK_OPEN}x{THINK_CLOSE}{IM_END}"
    assert (
        tokenizer.decode(tokenizer.encode(text), skip_special_tokens=True) == text[: -len(IM_END)]
    )


@pytest.mark.parametrize("query", QUERIES)
def test_tokenizer_round_trips_and_matches_raw_tokenizers(
    tiny_model_dir: Path, tokenizer, query: str
) -> None:
    from tokenizers import Tokenizer

    text = render_example(query, COMPLETION)
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    assert Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json")).encode(text).ids == ids
    assert ids.count(tokenizer.convert_tokens_to_ids(IM_END)) == 2


@pytest.mark.parametrize("query", QUERIES)
def test_chat_template_renders_the_prompt_exactly(tokenizer, query: str) -> None:
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": user_message(query)}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert rendered == render_prompt(query)


def test_chat_template_assistant_turn_has_a_think_block_training_text_does_not(
    tokenizer,
) -> None:
    """qmd_ft trains on render_prompt + render_completion, without Qwen3's empty think block."""
    query = QUERIES[0]
    conversation = tokenizer.apply_chat_template(messages(query, COMPLETION), tokenize=False)
    assert conversation == render_prompt(query) + EMPTY_THINK + render_completion(COMPLETION)
    assert conversation != render_example(query, COMPLETION)
    no_thinking = tokenizer.apply_chat_template(
        messages(query), tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert no_thinking == render_prompt(query) + EMPTY_THINK


def test_chat_template_and_split_are_qwens_verbatim(tokenizer) -> None:
    chat_template_utils = pytest.importorskip("trl.chat_template_utils")
    from transformers.models.qwen2 import tokenization_qwen2

    from qmd_ft.tiny_model import QWEN2_SPLIT_REGEX, QWEN3_CHAT_TEMPLATE

    assert chat_template_utils.qwen3_chat_template == QWEN3_CHAT_TEMPLATE
    assert tokenizer.chat_template == QWEN3_CHAT_TEMPLATE
    assert QWEN2_SPLIT_REGEX == tokenization_qwen2.PRETOKENIZE_REGEX


def test_mlx_lm_loads_it_with_logits_equal_to_transformers(tiny_model_dir: Path, tokenizer) -> None:
    mx = pytest.importorskip("mlx.core")
    mlx_lm = pytest.importorskip("mlx_lm")
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import numpy as np

    mlx_model, mlx_tokenizer = mlx_lm.load(str(tiny_model_dir))
    prompt = render_prompt(QUERIES[2])
    ids = tokenizer.encode(prompt, add_special_tokens=False)
    assert mlx_tokenizer.encode(prompt) == ids
    assert set(mlx_tokenizer.eos_token_ids) == set(
        tokenizer.convert_tokens_to_ids([IM_END, ENDOFTEXT])
    )

    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0].numpy()
    got = np.array(mlx_model(mx.array([ids]))[0])
    assert got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-4


def test_gguf_reads_its_vocab_and_maps_every_tensor(tiny_model_dir: Path) -> None:
    gguf = pytest.importorskip("gguf")
    from safetensors.numpy import load_file

    from qmd_ft.tiny_model import TINY_SHAPE

    vocab = gguf.SpecialVocab(tiny_model_dir, load_merges=True)
    saved = json.loads((tiny_model_dir / "tokenizer.json").read_text())
    assert len(vocab.merges) == len(saved["model"]["merges"])
    assert vocab.special_token_ids["eos"] == saved["added_tokens"][2]["id"]
    assert vocab.special_token_ids["pad"] == saved["added_tokens"][0]["id"]
    assert vocab.chat_template

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN3, TINY_SHAPE["num_hidden_layers"])
    weights = load_file(tiny_model_dir / "model.safetensors")
    unmapped = [name for name in weights if names.get_name(name, (".weight",)) is None]
    assert unmapped == []
