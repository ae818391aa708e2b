"""`qmd-ft bench`: the plan, the synthetic data, the report, and a whole tiny run on the CPU."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from qmd_ft.bench import SHAPES, BenchPlan, ratios, report, synthesize, vocabulary
from qmd_ft.errors import UserError
from qmd_ft.prompt import SPECIAL_TOKENS

FAST_FLAGS = ("--sft-steps", "1", "--grpo-steps", "1", "--warmup", "0", "--gen-tokens", "8")


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qmd_ft", "bench", *args], capture_output=True, text=True
    )


def test_qwen3_shape_is_the_real_models() -> None:
    pytest.importorskip("transformers")
    from transformers import Qwen3Config

    config = Qwen3Config(**SHAPES["qwen3-1.7b"])
    text, width = config.vocab_size * config.hidden_size, config.num_attention_heads * 128
    layer = 2 * width * config.hidden_size + 2 * 1024 * config.hidden_size  # q, o; k, v
    layer += 3 * config.hidden_size * config.intermediate_size + 2 * 128 + 2 * 2048  # mlp, norms
    assert text + config.num_hidden_layers * layer + config.hidden_size == 1_720_574_976


def test_synthetic_rows_have_upstream_like_lengths() -> None:
    rows = synthesize(2000, 1024, seed=0)
    assert synthesize(3, 1024, seed=0) == rows[:3]
    completion_words = [len(r["messages"][1]["content"].split()) for r in rows]
    query_words = [len(r["messages"][0]["content"].split()) - 5 for r in rows]
    assert min(completion_words) >= 8 and 3 <= min(query_words) <= max(query_words) <= 10
    long = sum(w > 95 for w in completion_words) / len(rows)
    assert 0.2 < long < 0.3  # a quarter are full expansions (~140), the rest ~50
    assert 70 < statistics.fmean(completion_words) < 85
    assert rows[0]["prompt"].endswith("<|im_start|>assistant\n")
    assert rows[0]["completion"].endswith("<|im_end|>\n")


def test_bench_tokenizer_is_word_level_at_the_shapes_vocab_size() -> None:
    pytest.importorskip("transformers")
    from backends.cuda.bench import bench_tokenizer

    tokens = vocabulary(1024, SPECIAL_TOKENS)
    assert len(tokens) == len(set(tokens)) == 1024 and tokens[-5:] == list(SPECIAL_TOKENS)
    tokenizer = bench_tokenizer(1024)
    assert len(tokenizer) == 1024
    row = synthesize(1, 1024, seed=1)[0]
    ids = tokenizer(row["prompt"] + row["completion"])["input_ids"]
    words = len((row["prompt"] + row["completion"]).split())
    # One token per word, plus the specials glued to a word (2 x im_start, 2 x im_end)...
    assert len(ids) == words + 4
    # ...and none unknown (unknown words would map to <|endoftext|>).
    assert tokenizer.convert_tokens_to_ids("<|endoftext|>") not in ids


def test_plans_are_checked() -> None:
    BenchPlan(shape="tiny").check()
    with pytest.raises(UserError, match="--model-shape"):
        BenchPlan(shape="qwen9").check()
    with pytest.raises(UserError, match="--parts"):
        BenchPlan(parts=("sft", "dpo")).check()
    with pytest.raises(UserError, match="--sft-steps must be at least 1"):
        BenchPlan(sft_steps=0).check()


def test_report_puts_ratios_beside_both_columns() -> None:
    ours = {"sft_real_tokens_per_s": 16000.0, "grpo_step_s": 1.2, "gen_tokens_per_s": 5500.0}
    upstream = {"sft_real_tokens_per_s": 479.0, "grpo_step_s": 13.7, "gen_tokens_per_s": 147.0}
    result = {
        "setup": {
            "device": "GPU",
            "shape": "qwen3-1.7b",
            "params": 1_720_574_976,
            "torch": "t",
            "transformers": "x",
            "trl": "y",
        },
        "ours_speed": {"padding_free": True},
        "ours": ours,
        "upstream": upstream,
        "ratios": ratios(ours, upstream),
    }
    assert result["ratios"] == {
        "sft_real_tokens_per_s": 33.4,
        "grpo_step_s": 11.42,
        "gen_tokens_per_s": 37.41,
    }
    table = report(result)
    assert "SFT real (non-pad) tokens/s  16,000  479" in table
    assert "11.42x" in table and "1,720,574,976 params" in table


def test_tiny_bench_on_cpu_prints_json_with_positive_numbers() -> None:
    pytest.importorskip("trl")
    r = _bench(
        "--model-shape", "tiny", "--device", "cpu", "--json", "--upstream-recipe", *FAST_FLAGS
    )
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout)
    assert set(result) == {"setup", "ours_speed", "ours", "upstream", "ratios"}
    assert result["setup"]["shape"] == "tiny" and result["setup"]["device"] == "cpu"
    assert result["setup"]["params"] > 0 and result["ours_speed"]["fast_generation"] is True
    for side in ("ours", "upstream"):
        got = result[side]
        for key in ("sft_real_tokens_per_s", "grpo_step_s", "gen_tokens_per_s"):
            assert got[key] > 0, (side, key)
        assert got["grpo_mean_completion_len"] > 0
        assert all(n > 0 for n in got["sft_tokens_per_step"])
    assert set(result["ratios"]) == {"sft_real_tokens_per_s", "grpo_step_s", "gen_tokens_per_s"}
    assert all(v > 0 for v in result["ratios"].values())


def test_bench_parts_and_speed_overrides(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    r = _bench(
        "--model-shape", "tiny", "--device", "cpu", "--parts", "gen",
        "--speed", "fast_generation=false", *FAST_FLAGS,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "generation tokens/s" in r.stdout and "SFT" not in r.stdout.split("\n\n")[0]
    assert "fast_generation=False" in r.stdout
    bad = _bench("--model-shape", "tiny", "--device", "cpu", "--speed", "turbo=1")
    assert bad.returncode == 1 and "unknown speed option" in bad.stderr


def test_full_shape_without_a_gpu_says_how_to_run_instead() -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the default run would start")
    r = _bench()
    assert r.returncode == 1 and "use --model-shape tiny" in r.stderr


@pytest.mark.gpu
def test_tiny_bench_on_gpu_with_every_fast_switch() -> None:
    r = _bench("--model-shape", "tiny", "--device", "cuda", "--json", "--upstream-recipe")
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout)
    assert result["ours_speed"]["compile_generation"] is True
    assert all(v > 0 for v in result["ratios"].values())
