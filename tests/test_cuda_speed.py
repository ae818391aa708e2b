"""The cuda backend's speed paths on the tiny model (CPU): same numbers as the plain paths.

Padding-free SFT batches must give the padded batch's loss and gradients; the static-cache
generator must give HF generate's greedy tokens; the GRPO generation twin must give the PEFT
policy's logits; and the rollout hook must drive a real GRPO run. GPU-only kernels (CUDA graphs,
liger, flash-attn, vLLM) are measured by `qmd-ft bench` on a GPU, not here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")

import torch
from cuda_support import EXAMPLES, THINK_QUERY, log_history, make_config, memorized_model, prepared
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from qmd_ft.backend import TrainRequest
from qmd_ft.backends.cuda.fastgen import Sampling, StaticDecoder, select_next
from qmd_ft.backends.cuda.generate import make_generator
from qmd_ft.backends.cuda.grpo import COMPLETIONS_FILE, run_grpo
from qmd_ft.backends.cuda.rollout import FastRollout, GenerationTwin
from qmd_ft.backends.cuda.sft import build_sft, run_sft, sft_args
from qmd_ft.backends.cuda.speed import SpeedOptions, check_speed, rows_per_batch, split_step
from qmd_ft.config import EvalConfig, TrainingConfig
from qmd_ft.errors import UserError
from qmd_ft.prompt import render_prompt
from qmd_ft.reward import score

PADDING_FREE = SpeedOptions(padding_free=True)


@pytest.fixture(scope="module")
def memorized(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return memorized_model(tmp_path_factory, tiny_model_dir)


def _loss_and_grads(
    tiny_model_dir: Path, data: Path, out: Path, speed: SpeedOptions
) -> tuple[float, dict[str, torch.Tensor], dict[str, Any]]:
    """One training forward/backward of the first four rows, through the trainer's collator."""
    cfg = make_config(tiny_model_dir, out, data, lora=None)
    trainer = build_sft(TrainRequest(cfg, data, out, device="cpu"), speed).trainer
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, dict(batch))
    loss.backward()
    grads = {n: p.grad for n, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.item(), grads, batch


def test_padding_free_batch_has_the_padded_loss_and_gradients(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = prepared(tmp_path)
    plain, plain_grads, padded = _loss_and_grads(
        tiny_model_dir, data, tmp_path / "a", SpeedOptions()
    )
    fast, fast_grads, flat = _loss_and_grads(tiny_model_dir, data, tmp_path / "b", PADDING_FREE)

    # The padded batch has pad tokens; the padding-free one is one row of exactly the real ones.
    assert padded["input_ids"].shape[0] == 4 and (padded["attention_mask"] == 0).any()
    assert flat["input_ids"].shape[0] == 1 and "attention_mask" not in flat
    assert flat["input_ids"].shape[1] == int(padded["attention_mask"].sum())
    assert (flat["position_ids"] == 0).sum() == 4  # each example restarts its positions

    assert fast == pytest.approx(plain, rel=1e-5)
    assert plain_grads.keys() == fast_grads.keys()
    for name, grad in plain_grads.items():
        scale = grad.abs().max().item() or 1.0
        assert (fast_grads[name] - grad).abs().max().item() <= 1e-5 * scale, name


def test_padding_free_sft_trains_and_evaluates_like_the_plain_path(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = prepared(tmp_path)
    runs = {}
    for name, speed in (("plain", SpeedOptions()), ("fast", PADDING_FREE)):
        out = tmp_path / name
        cfg = make_config(tiny_model_dir, out, data, training={"eval_steps": 1000})
        run_sft(TrainRequest(cfg, data, out, device="cpu", max_steps=8), speed=speed)
        runs[name] = (
            [e["loss"] for e in log_history(out) if "loss" in e],
            json.loads((out / "manifest.json").read_text())["metrics"]["eval_loss"],
        )
    (plain_losses, plain_eval), (fast_losses, fast_eval) = runs["plain"], runs["fast"]
    assert len(plain_losses) == len(fast_losses) == 8
    assert fast_losses == pytest.approx(plain_losses, rel=1e-4)
    assert fast_eval == pytest.approx(plain_eval, rel=1e-3)


def test_token_budget_sets_micro_batch_and_accumulation_together(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    assert rows_per_batch(1000, [90, 110, 100]) == 10
    assert rows_per_batch(10, [500]) == 1
    # The recipe's 16 examples per step (4 x 4): the largest micro-batch dividing 16 that fits.
    assert split_step(100_000, [100], 16) == (16, 1)
    assert split_step(1000, [100], 16) == (8, 2)
    assert split_step(350, [100], 16) == (2, 8)
    assert split_step(100, [100], 12) == (1, 12)
    with pytest.raises(UserError, match="tokens_per_batch 50: holds no example"):
        split_step(50, [100], 16)

    data = prepared(tmp_path)
    training = {"batch_size": 4, "gradient_accumulation_steps": 4}
    cfg = make_config(tiny_model_dir, tmp_path / "o", data, training=training)
    req = TrainRequest(cfg, data, tmp_path / "o", device="cpu")
    lengths = [100] * 8
    plain = sft_args(req, "cpu", SpeedOptions(), False, lengths)
    assert (plain.per_device_train_batch_size, plain.gradient_accumulation_steps) == (4, 4)
    assert plain.max_length == cfg.training.max_length and not plain.padding_free
    packed = sft_args(
        req, "cpu", SpeedOptions(padding_free=True, tokens_per_batch=800), False, lengths
    )
    assert (packed.per_device_train_batch_size, packed.gradient_accumulation_steps) == (8, 2)
    assert packed.padding_free and packed.max_length is None  # rows are cut while tokenizing
    big = sft_args(req, "cpu", SpeedOptions(tokens_per_batch=10**6), False, lengths)
    assert (big.per_device_train_batch_size, big.gradient_accumulation_steps) == (16, 1)
    assert big.train_sampling_strategy != "group_by_length"  # it would regroup the steps
    # `auto` sizes to GPU memory once the model is placed; a CPU keeps the recipe's batches.
    auto = build_sft(req, SpeedOptions(tokens_per_batch="auto")).trainer.args
    assert (auto.per_device_train_batch_size, auto.gradient_accumulation_steps) == (4, 4)


def test_speed_switches_come_from_the_config_and_are_checked() -> None:
    class SpeedTraining(TrainingConfig):
        """The training section once the schema declares the switches."""

        padding_free: bool = True
        tokens_per_batch: int | str | None = 4096

    class Holder:
        training = SpeedTraining()

    assert SpeedOptions.from_config(Holder()) == SpeedOptions(
        padding_free=True, tokens_per_batch=4096
    )

    class Plain:
        training = TrainingConfig()

    assert SpeedOptions.from_config(Plain()) == SpeedOptions()
    assert SpeedOptions().with_overrides({"torch_compile": True}).torch_compile
    with pytest.raises(UserError, match="unknown speed option"):
        SpeedOptions().with_overrides({"turbo": True})
    with pytest.raises(UserError, match="use_liger_kernel needs the liger-kernel package"):
        check_speed(SpeedOptions(use_liger_kernel=True), "cpu")
    with pytest.raises(UserError, match="use_vllm needs vLLM"):
        check_speed(SpeedOptions(use_vllm=True), "cpu")
    with pytest.raises(UserError, match="tokens_per_batch 0"):
        check_speed(SpeedOptions(tokens_per_batch=0), "cpu")
    check_speed(SpeedOptions.fast("cpu"), "cpu")


def test_static_decoder_greedy_tokens_equal_hf_generate(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    queries = ["vim", "rust error handling", "a much longer query about soil in a northern garden"]
    prompts = [render_prompt(q) for q in queries]
    n = 24
    model.generation_config = GenerationConfig(
        max_new_tokens=n, do_sample=False, eos_token_id=[], pad_token_id=tokenizer.pad_token_id
    )
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        want = model.generate(**batch)[:, batch["input_ids"].shape[1] :].tolist()
    decoder = StaticDecoder(model)
    ids = [tokenizer(p)["input_ids"] for p in prompts]
    assert decoder.generate(ids, n, Sampling(), [], tokenizer.pad_token_id) == want
    # The cache is reused across calls, and rows do not depend on their batch.
    assert decoder.generate(ids[:1], n, Sampling(), [], tokenizer.pad_token_id) == want[:1]
    stop = want[0][5]
    cut = decoder.generate(ids[:1], n, Sampling(), [stop], tokenizer.pad_token_id)[0]
    assert cut == want[0][: want[0].index(stop) + 1]  # ends at its stop token, kept


def test_sampling_filters_like_top_k_and_top_p() -> None:
    torch.manual_seed(0)
    logits = torch.tensor([[4.0, 3.0, 0.0, -1.0]]).repeat(2000, 1)
    assert set(select_next(logits, Sampling(1.0, top_k=2)).tolist()) == {0, 1}
    # p(0) = 0.72, p(1) = 0.26: top_p 0.5 keeps token 0 alone, 0.9 keeps tokens 0 and 1.
    assert set(select_next(logits, Sampling(1.0, top_p=0.5)).tolist()) == {0}
    drawn = select_next(logits, Sampling(1.0, top_p=0.9))
    assert set(drawn.tolist()) == {0, 1}
    assert (drawn == 0).float().mean().item() == pytest.approx(0.73, abs=0.04)
    assert select_next(logits[:1], Sampling()).item() == 0


def test_fast_eval_generator_gives_the_plain_generators_texts(
    memorized: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queries = [EXAMPLES[0][0], THINK_QUERY, "an unseen and rather longer query about gardening"]
    prompts = [render_prompt(q) for q in queries]
    gen = EvalConfig(max_new_tokens=120, batch_size=2)
    plain = make_generator(str(memorized), [], gen, "cpu")(prompts)
    fast = make_generator(str(memorized), [], gen, "cpu", fast=True)(prompts)
    assert fast == plain and plain[0] == EXAMPLES[0][1]

    class FastEval(EvalConfig):
        """The eval section once the schema declares the switch."""

        fast_generation: bool = True

    short = {"max_new_tokens": 24, "batch_size": 4}
    greedy = make_generator(str(memorized), [], EvalConfig(**short), "cpu", fast=True)(prompts)
    decoded: list[int] = []
    real_generate = StaticDecoder.generate

    def counted(self: StaticDecoder, *args: Any, **kwargs: Any) -> list[list[int]]:
        decoded.append(len(args[0]))
        return real_generate(self, *args, **kwargs)

    monkeypatch.setattr(StaticDecoder, "generate", counted)
    sampled = FastEval(**short, temperature=1.5, seed=3)
    generate = make_generator(str(memorized), [], sampled, "cpu")
    first = generate(prompts)
    assert decoded == [3], "eval.fast_generation did not select the static-cache decoder"
    assert generate(prompts) == first  # seeded
    assert first != greedy  # and sampled at the configured temperature, not greedy


@pytest.mark.slow
def test_compiled_decoder_matches_eager(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = [tokenizer(render_prompt(q))["input_ids"] for q, _ in EXAMPLES[:3]]
    eager = StaticDecoder(model).generate(ids, 16, Sampling(), [], tokenizer.pad_token_id)
    compiled = StaticDecoder(model, compile=True)
    for _ in range(2):  # compiles, then replays
        assert compiled.generate(ids, 16, Sampling(), [], tokenizer.pad_token_id) == eager


def test_generation_twin_has_the_peft_policys_logits(tiny_model_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    policy = get_peft_model(base, lora).eval()
    twin = GenerationTwin(policy)
    ids = torch.tensor([[5, 17, 99, 230, 7, 64]])
    with torch.no_grad():
        assert torch.allclose(twin.model(ids).logits, policy(ids).logits, atol=1e-5)
        for name, param in policy.named_parameters():  # an optimizer step, in place
            if "lora_B" in name:
                param.normal_(0, 0.05)
        moved = policy(ids).logits
        assert not torch.allclose(twin.model(ids).logits, moved, atol=1e-3)
        twin.sync()
        assert torch.allclose(twin.model(ids).logits, moved, atol=1e-5)
    # Frozen weights are shared, not copied; only the merged targets have their own storage.
    embed = policy.get_base_model().model.embed_tokens.weight
    assert twin.model.model.embed_tokens.weight.data_ptr() == embed.data_ptr()
    q_base = policy.get_base_model().model.layers[0].self_attn.q_proj.base_layer.weight
    assert twin.model.model.layers[0].self_attn.q_proj.weight.data_ptr() != q_base.data_ptr()


def test_grpo_with_the_rollout_hook_logs_rubric_rewards(
    memorized: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = FastRollout.__call__

    def counted(self: FastRollout, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        calls.append(len(prompts))
        return original(self, prompts, trainer)

    monkeypatch.setattr(FastRollout, "__call__", counted)
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    data = prepared(tmp_path)
    out = tmp_path / "grpo"
    cfg = make_config(
        tiny_model_dir,
        out,
        data,
        model={"sft": str(memorized)},
        training={"batch_size": 8, "learning_rate": 5e-3},
        grpo={"num_generations": 4, "max_completion_length": 64},
    )
    speed = SpeedOptions(fast_generation=True)
    run_grpo(TrainRequest(cfg, data, out, device="cpu", max_steps=2), speed=speed)

    assert calls == [8, 8]  # one batched rollout per step, every completion of it
    logged = [e for e in log_history(out) if "reward" in e]
    assert [e["step"] for e in logged] == [1, 2]
    for entry in logged:
        for key in ("loss", "reward", "reward_std", "kl", "completions/mean_length"):
            assert math.isfinite(entry[key]), (key, entry)
        assert 0 < entry["completions/mean_length"] <= 64
    rows = [json.loads(line) for line in (out / COMPLETIONS_FILE).read_text().splitlines()]
    assert len(rows) == 16
    assert any(r["reward"] > 0 for r in rows)  # the memorized model answers in format
    for row in rows:
        assert score(row["query"], row["completion"]).reward == pytest.approx(row["reward"])
