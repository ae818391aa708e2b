"""`qmd-ft bench`: the plan, the synthetic data, the report, and whole tiny runs on the CPU
(cuda backend and mlx backend)."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from qmd_ft.bench import (
    SHAPES,
    BenchPlan,
    bench_tokenizer,
    data_rows,
    ratios,
    report,
    sft_config,
    synthesize,
    vocabulary,
)
from qmd_ft.errors import UserError
from qmd_ft.prompt import SPECIAL_TOKENS

FAST_FLAGS = ("--sft-steps", "1", "--grpo-steps", "1", "--warmup", "0", "--gen-tokens", "8")


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qmd_ft", "bench", *args], capture_output=True, text=True
    )


def qwen3_params(dims: dict) -> int:
    """Parameters of a tied-embedding Qwen3 of these dimensions, counted by hand."""
    hidden, head = dims["hidden_size"], dims["head_dim"]
    q_width, kv_width = dims["num_attention_heads"] * head, dims["num_key_value_heads"] * head
    layer = 2 * q_width * hidden + 2 * kv_width * hidden  # q, o; k, v
    layer += 3 * hidden * dims["intermediate_size"] + 2 * head + 2 * hidden  # mlp, norms
    return dims["vocab_size"] * hidden + dims["num_hidden_layers"] * layer + hidden


def test_qwen3_shape_is_the_real_models() -> None:
    pytest.importorskip("transformers")
    from transformers import Qwen3Config

    config = Qwen3Config(**SHAPES["qwen3-1.7b"])
    assert config.num_attention_heads * 128 == 2048 and config.num_key_value_heads * 128 == 1024
    assert qwen3_params(SHAPES["qwen3-1.7b"]) == 1_720_574_976


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


def test_mlx_tiny_bench_on_cpu_trains_and_times_the_real_rows() -> None:
    pytest.importorskip("mlx_lm")
    from qmd_ft.backends.mlx.dataset import epoch_order

    r = _bench(
        "--backend", "mlx", "--model-shape", "tiny", "--device", "cpu", "--json",
        "--sft-steps", "1", "--grpo-steps", "1", "--warmup", "1", "--gen-tokens", "8",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout)
    assert set(result) == {"setup", "ours_speed", "ours"}
    setup, ours = result["setup"], result["ours"]
    assert setup["backend"] == "mlx" and setup["device"].startswith("cpu")
    assert setup["params"] == qwen3_params(SHAPES["tiny"])  # the cuda bench's shape, exactly
    for key in ("sft_real_tokens_per_s", "grpo_step_s", "gen_tokens_per_s"):
        assert math.isfinite(ours[key]) and ours[key] > 0, key
    # Two SFT steps ran (warmup + measured); each counted exactly the real (prompt +
    # completion) tokens of its 16 rows, in the trainer's seeded order...
    cfg = sft_config(Path("model"), Path("data"), Path("out")).training
    per_step = cfg.batch_size * cfg.gradient_accumulation_steps
    rows = synthesize(data_rows("tiny"), SHAPES["tiny"]["vocab_size"], seed=0)
    order = epoch_order(len(rows), cfg.seed, 0)
    real = [len((rows[i]["prompt"] + rows[i]["completion"]).split()) + 4 for i in order]
    assert ours["sft_tokens_per_step"] == [sum(real[:per_step]), sum(real[per_step : 2 * per_step])]
    # ...trained on them (a random model's loss is ln(vocab)), and the rate leaves the warmup out.
    assert all(abs(loss - math.log(1024)) < 0.3 for loss in ours["sft_loss_per_step"])
    tokens, times = ours["sft_tokens_per_step"][1], ours["sft_step_s"][1]
    assert ours["sft_real_tokens_per_s"] == pytest.approx(tokens / times, rel=0.01)
    assert len(ours["grpo_step_s_all"]) == 2 and ours["grpo_step_s"] == ours["grpo_step_s_all"][1]
    assert 0 < ours["grpo_mean_completion_len"] <= 8
    assert "mlx on cpu" in report(result) and "dtype=float32" in report(result)


def test_mlx_bench_with_upstream_recipe_on_the_cpu_beside() -> None:
    pytest.importorskip("mlx_lm")
    pytest.importorskip("trl")
    r = _bench(
        "--backend", "mlx", "--model-shape", "tiny", "--device", "cpu", "--json",
        "--upstream-recipe", "--parts", "gen", *FAST_FLAGS,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout)
    assert result["setup"]["upstream_device"] == "cpu (torch)" and "torch" in result["setup"]
    assert result["ours"]["gen_tokens_per_s"] > 0 and result["upstream"]["gen_tokens_per_s"] > 0
    assert set(result["ratios"]) == {"gen_tokens_per_s"}
    assert result["ratios"]["gen_tokens_per_s"] > 0
    assert "upstream recipe on cpu (torch)" in report(result)


def test_mlx_bench_refuses_what_it_cannot_measure() -> None:
    pytest.importorskip("mlx_lm")
    import mlx.core as mx

    speed = _bench("--backend", "mlx", "--model-shape", "tiny", "--speed", "padding_free=true")
    assert speed.returncode == 1 and "no speed switches" in speed.stderr
    if not mx.is_available(mx.gpu):
        full = _bench("--backend", "mlx")
        assert full.returncode == 1 and "use --model-shape tiny" in full.stderr
    other = _bench("--backend", "tpu", "--model-shape", "tiny")
    assert other.returncode == 1 and "cuda or mlx" in other.stderr
