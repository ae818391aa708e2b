"""GPU-side choices made from numbers a CPU can check: memory sizing, packed attention, device.

`tokens_per_batch: auto` is sized from the memory free once the model is placed, less what the
first optimizer step adds (gradients, AdamW's moments); packed batches need a kernel that reads
sequence boundaries; each `--gpus N` process picks its own GPU before touching CUDA. The GPU
runs of the same code are in tests/test_cuda_gpu.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("peft")

import torch
from peft import get_peft_model
from transformers import AutoModelForCausalLM

from qmd_ft.backends.cuda import loading, speed
from qmd_ft.backends.cuda.loading import peft_lora, resolve_device
from qmd_ft.backends.cuda.speed import (
    AUTO_MAX_TOKENS,
    SpeedOptions,
    activation_bytes_per_token,
    auto_tokens_per_batch,
    packed_attention,
    trainable_parameters,
    training_state_bytes,
)
from qmd_ft.bench import model_configs
from qmd_ft.config import LoraConfig
from qmd_ft.errors import UserError

GIB = 2**30


def test_trainable_parameters_are_what_peft_will_train(tiny_model_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    full = sum(p.numel() for p in model.parameters())
    assert trainable_parameters(model, None) == full
    for targets in (["q_proj", "v_proj"], LoraConfig().target_modules):
        lora = LoraConfig(rank=4, target_modules=targets)
        counted = trainable_parameters(model, lora)
        fresh = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        trained, _ = get_peft_model(fresh, peft_lora(lora)).get_nb_trainable_parameters()
        assert counted == trained > 0


def test_auto_budget_counts_the_training_state() -> None:
    config, _, _ = model_configs("qwen3-1.7b")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    lora = LoraConfig(rank=16)
    full_state = training_state_bytes(model, None)
    # Full fine-tuning of Qwen3-1.7B: 1.72B fp32 gradients + two AdamW moments, ~19 GiB.
    assert full_state == trainable_parameters(model, None) * 12
    assert 18 * GIB < full_state < 21 * GIB
    assert training_state_bytes(model, lora) < GIB / 2  # LoRA r16: ~17M parameters
    per_token = activation_bytes_per_token(config)
    # 72 GiB free after placing fp32 weights on an 80 GB card: what the state leaves, halved.
    free = 72 * GIB
    full_tokens = auto_tokens_per_batch(model, None, free)
    assert full_tokens == int((free - full_state) * 0.5) // per_token
    lora_tokens = auto_tokens_per_batch(model, lora, free)
    assert lora_tokens == int((free - training_state_bytes(model, lora)) * 0.5) // per_token
    assert full_tokens < lora_tokens < AUTO_MAX_TOKENS  # ~11.6k tokens: ~100 rows of ~115
    assert auto_tokens_per_batch(model, lora, 1000 * GIB) == AUTO_MAX_TOKENS
    with pytest.raises(UserError, match="cannot hold its gradients and optimizer states"):
        auto_tokens_per_batch(model, None, 16 * GIB)


def test_packed_batches_need_a_boundary_kernel(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    packed = SpeedOptions(padding_free=True)
    assert packed_attention(SpeedOptions(), "cuda") == (SpeedOptions(), None)
    assert packed_attention(packed, "cpu") == (packed, None)  # small CPU batches: sdpa's mask
    monkeypatch.setattr(speed, "flash_attn_available", lambda: True)
    assert packed_attention(packed, "cuda") == (packed, "flash_attention_2")
    monkeypatch.setattr(speed, "flash_attn_available", lambda: False)
    monkeypatch.setattr(speed, "triton_available", lambda: True)
    assert packed_attention(packed, "cuda") == (packed, "flex_attention")
    assert SpeedOptions.fast("cuda").padding_free
    monkeypatch.setattr(speed, "triton_available", lambda: False)
    assert packed_attention(packed, "cuda") == (SpeedOptions(), None)  # padded, and says so
    assert "training on padded batches" in capsys.readouterr().out
    assert not SpeedOptions.fast("cuda").padding_free


def test_each_process_picks_its_gpu_before_touching_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen: list[int] = []
    monkeypatch.setattr(loading.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(loading.torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device("cuda") == "cuda" and chosen == [3]
    assert resolve_device("cpu") == "cpu" and chosen == [3]  # CPU processes: nothing to pick
    monkeypatch.delenv("LOCAL_RANK")
    assert resolve_device(None) == "cuda" and chosen == [3]  # one process: the default GPU


def test_eval_generates_in_the_dtype_the_weights_are_stored_in(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_merge_precision import bf16_copy

    bf16_dir = bf16_copy(tiny_model_dir, tmp_path / "bf16")
    assert loading.generation_dtype(str(bf16_dir), [], "cpu") == torch.float32
    monkeypatch.setattr(loading, "use_bf16", lambda device: device == "cuda")
    assert loading.generation_dtype(str(bf16_dir), [], "cuda") == torch.bfloat16
    # An fp32 release (merged so GRPO's update survives) and adapters merged on load stay fp32.
    assert loading.generation_dtype(str(tiny_model_dir), [], "cuda") == torch.float32
    assert loading.generation_dtype(str(bf16_dir), ["adapter"], "cuda") == torch.float32


def test_a_budget_below_one_example_is_refused_before_the_model_loads(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cuda_support import make_config, prepared

    from qmd_ft.backend import TrainRequest
    from qmd_ft.backends.cuda import sft

    def never(*_: object, **__: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(sft, "load_merged", never)
    data = prepared(tmp_path)
    cfg = make_config(tiny_model_dir, tmp_path / "o", data)
    req = TrainRequest(cfg, data, tmp_path / "o", device="cpu")
    with pytest.raises(UserError, match="tokens_per_batch 10: holds no example"):
        sft.build_sft(req, SpeedOptions(tokens_per_batch=10))
