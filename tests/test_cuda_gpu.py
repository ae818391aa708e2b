"""What only a GPU can check: bf16, packed-attention kernels, the 151,936-token head, compiled
decoding with CUDA graphs, liger, and memory sizing. Every test is `gpu`-marked (skipped
without CUDA); `bench/gpu_check.sh` runs them on a lent GPU beside `qmd-ft bench`.

The CPU tests prove the same arithmetic in fp32 (tests/test_cuda_recipe.py,
test_cuda_speed.py, test_merge_precision.py, test_cuda_compile.py); here the tolerances are
bf16's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")

import torch
from cuda_support import (
    EXAMPLES,
    RECIPE,
    make_config,
    memorized_model,
    prepared,
    train_steps,
)
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from qmd_ft.backend import TrainRequest
from qmd_ft.backends.cuda.fastgen import Sampling, StaticDecoder
from qmd_ft.backends.cuda.sft import IGNORE_INDEX, build_sft
from qmd_ft.backends.cuda.speed import (
    SpeedOptions,
    flash_attn_available,
    liger_available,
    packed_attention,
    training_state_bytes,
)
from qmd_ft.prompt import render_prompt

pytestmark = pytest.mark.gpu

QWEN_VOCAB = 151_936


@pytest.fixture(scope="module")
def memorized(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return memorized_model(tmp_path_factory, tiny_model_dir)


def _losses(tiny_model_dir: Path, data: Path, out: Path, speed: SpeedOptions) -> dict[str, Any]:
    return train_steps(tiny_model_dir, data, out, speed, "cuda", RECIPE)


def test_fast_switches_train_the_recipe_on_gpu(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`SpeedOptions.fast("cuda")` (what bench runs) against the plain recipe, in bf16."""
    data = prepared(tmp_path)
    fast = SpeedOptions.fast("cuda")
    plain = _losses(tiny_model_dir, data, tmp_path / "plain", SpeedOptions())
    ours = _losses(tiny_model_dir, data, tmp_path / "fast", fast)
    assert ours["steps"] == plain["steps"] == [1, 2, 3, 4]
    assert ours["lr"] == pytest.approx(plain["lr"], rel=1e-6)
    assert ours["loss"] == pytest.approx(plain["loss"], rel=3e-2)  # bf16 kernels, other orders


@pytest.mark.parametrize("switch", ["padding_free", "torch_compile", "use_liger_kernel"])
def test_each_gpu_switch_trains_the_recipe(
    switch: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    if switch == "use_liger_kernel" and not liger_available():
        pytest.skip("liger-kernel is not installed")
    data = prepared(tmp_path)
    plain = _losses(tiny_model_dir, data, tmp_path / "plain", SpeedOptions())
    ours = _losses(tiny_model_dir, data, tmp_path / switch, SpeedOptions(**{switch: True}))
    assert ours["steps"] == plain["steps"]
    assert ours["lr"] == pytest.approx(plain["lr"], rel=1e-6)
    assert ours["loss"] == pytest.approx(plain["loss"], rel=3e-2)


def test_packed_batches_use_a_boundary_kernel_and_match_padded(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """flash-attn or flex_attention on a packed batch: the padded batch's loss, no dense mask."""
    speed, attn = packed_attention(SpeedOptions(padding_free=True), "cuda")
    assert speed.padding_free
    assert attn == ("flash_attention_2" if flash_attn_available() else "flex_attention")
    data = prepared(tmp_path)
    losses = {}
    for name, options in (("padded", SpeedOptions()), ("packed", SpeedOptions(padding_free=True))):
        cfg = make_config(tiny_model_dir, tmp_path / name, data, lora=None)
        trainer = build_sft(
            TrainRequest(cfg, data, tmp_path / name, device="cuda"), options
        ).trainer
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
        batch = {k: v.to("cuda") for k, v in batch.items()}
        trainer.model.train()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            losses[name] = trainer.compute_loss(trainer.model, batch).item()
        if name == "packed":
            assert trainer.model.config._attn_implementation == attn
    assert losses["packed"] == pytest.approx(losses["padded"], rel=2e-2)


def _real_vocab_model(tiny_model_dir: Path, out: Path) -> Path:
    """The tiny model's shape with Qwen's 151,936-token head (random), tiny tokenizer kept."""
    shutil.copytree(tiny_model_dir, out)
    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.vocab_size = QWEN_VOCAB
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    return out


def test_chunked_lm_head_loss_on_the_real_vocab(tiny_model_dir: Path, tmp_path: Path) -> None:
    """TRL's fused head gives the full-logits cross-entropy without materializing the logits."""
    model_dir = _real_vocab_model(tiny_model_dir, tmp_path / "wide")
    data = prepared(tmp_path)
    cfg = make_config(model_dir, tmp_path / "o", data, lora=None)
    trainer = build_sft(TrainRequest(cfg, data, tmp_path / "o", device="cuda")).trainer
    rows = [trainer.train_dataset[i % len(trainer.train_dataset)] for i in range(32)]
    batch = {k: v.to("cuda") for k, v in trainer.data_collator(rows).items()}
    model = trainer.model.train()
    tokens = int(batch["attention_mask"].sum())
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = torch.cuda.memory_allocated()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        fused = trainer.compute_loss(model, batch)
    fused.backward()
    peak = torch.cuda.max_memory_allocated() - start
    full_logits_bytes = tokens * QWEN_VOCAB * 4
    assert peak < full_logits_bytes / 2, (peak, full_logits_bytes)

    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        hidden = model.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        logits = model.lm_head(hidden).float()
    labels = batch["labels"][:, 1:]
    reference = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, QWEN_VOCAB), labels.reshape(-1), ignore_index=IGNORE_INDEX
    )
    assert fused.item() == pytest.approx(reference.item(), rel=1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_decoder_gives_hf_greedy_tokens(memorized: Path, dtype: torch.dtype) -> None:
    """CUDA-graph decoding against HF `generate` on the memorized model (clear argmaxes)."""
    tokenizer = AutoTokenizer.from_pretrained(memorized, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(memorized, dtype=dtype).to("cuda").eval()
    prompts = [render_prompt(q) for q, _ in EXAMPLES[:4]]
    n = 48
    model.generation_config = GenerationConfig(
        max_new_tokens=n, do_sample=False, eos_token_id=[], pad_token_id=tokenizer.pad_token_id
    )
    batch = tokenizer(prompts, return_tensors="pt", padding=True).to("cuda")
    with torch.no_grad():
        want = model.generate(**batch)[:, batch["input_ids"].shape[1] :].tolist()
    decoder = StaticDecoder(model, compile=True)
    ids = [tokenizer(p)["input_ids"] for p in prompts]
    for _ in range(3):  # compiles, then replays the CUDA graph
        assert decoder.generate(ids, n, Sampling(), [], tokenizer.pad_token_id) == want


def test_auto_budget_is_sized_after_placement_and_fits(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """`auto` on a real card: the recipe's step kept, the state counted, the steps fit."""
    data = prepared(tmp_path)
    training = {**RECIPE, "batch_size": 4, "gradient_accumulation_steps": 4}
    cfg = make_config(tiny_model_dir, tmp_path / "o", data, training=training)
    req = TrainRequest(cfg, data, tmp_path / "o", device="cuda", max_steps=2)
    trainer = build_sft(req, SpeedOptions(tokens_per_batch="auto")).trainer
    args = trainer.args
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 16
    assert args.per_device_train_batch_size == 16  # a tiny model: the whole step in one batch
    assert next(trainer.model.parameters()).device.type == "cuda"  # placed before sizing
    assert training_state_bytes(trainer.model, None) > 0
    trainer.train()
    _, total = torch.cuda.mem_get_info()
    assert torch.cuda.max_memory_allocated() < total


def test_bf16_grpo_logs_its_update_against_bf16(
    memorized: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A LoRA GRPO run on a bf16 base says how much of its update bf16 storage keeps."""
    from qmd_ft.backends.cuda.grpo import run_grpo

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    base = tmp_path / "bf16-base"
    AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).save_pretrained(base)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(base)
    data = prepared(tmp_path)
    out = tmp_path / "grpo"
    cfg = make_config(
        base,
        out,
        data,
        model={"sft": str(memorized)},
        training={"batch_size": 8, "learning_rate": 5e-7},
        grpo={"num_generations": 4, "max_completion_length": 32},
        lora={"rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
    )
    speed = SpeedOptions(fast_generation=True, compile_generation=True)
    run_grpo(TrainRequest(cfg, data, out, device="cuda", max_steps=2), speed=speed)
    update = json.loads((out / "manifest.json").read_text())["metrics"]["update"]
    assert {"rms_bfloat16_steps", "kept_bfloat16", "kept_float16", "kept_float32"} <= set(update)
    assert update["kept_float32"] == pytest.approx(1.0, abs=1e-3)
