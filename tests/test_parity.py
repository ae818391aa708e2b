"""Parity across backends: the cuda backend (torch, TRL, PEFT), the mlx backend (mlx-lm and our
GRPO loop) and the GGUF files (llama.cpp) compute the same numbers from the same inputs, so a
model trained on either backend is evaluated, exported and published by the same code and its
numbers mean the same thing.

Stages, each in its own test(s); every failure message names the stage and how far apart the two
sides are:

1. forward: same weights, same fp32 logits (max abs diff < 1e-4) in transformers and mlx-lm on
   prompts rendered by qmd_ft.prompt, and the same token ids for the chat-rendered prompt from
   both tokenizers and from the chat template;
2. greedy generation: each backend's `generator` gives the same completion for 20 eval queries;
   a divergence is accepted only at a near-tie (top two logits < 1e-4 apart at that step);
3. SFT loss: one batch through TRL's SFTTrainer as the cuda backend builds it, and through the
   mlx backend's completion-only loss: same tokens, same mask, same mean (relative diff < 1e-4);
4. GRPO: for the same log-probs, reference log-probs, rewards and masks, TRL's GRPOTrainer (as the
   cuda backend builds it from configs/grpo.yaml) and the mlx loop give the same advantages and
   step loss (within 1e-5), for the config's loss type and every other supported one; their
   gradients agree with TRL's as the cuda backend configures it (`use_bias_correction_kl` off:
   the classic k3 KL penalty both backends train with);
5. adapters: mlx-lm adapter -> PEFT and PEFT -> mlx-lm give the logits of the original;
6. reward: each backend's eval score of a completion equals its trainer's reward for the same
   tokens, and the two trainers' reward paths give the same tokens the same reward;
7. GGUF: f32/f16 files in llama.cpp give transformers' logits within stated bounds, and the gguf
   eval backend's greedy completions equal the cuda backend's.

The model is the tiny Qwen3 fully fine-tuned to recite tests/cuda_support.EXAMPLES (shared with
the cuda tests): on unseen eval queries it writes varied, multi-line, partly well-formed answers
of up to `GEN.max_new_tokens` tokens, so generation and reward comparisons are not vacuous.
Measured values are printed as `[parity] ...` lines (pytest -s, or -rP). Helpers that drive TRL
and the mlx loop on given numbers live in tests/parity_support.py.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
pytest.importorskip("mlx_lm")
torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("peft")

from cuda_support import EXAMPLES, memorized_model, write_examples  # noqa: E402
from parity_support import (  # noqa: E402
    ROOT,
    StepResult,
    built_trainer,
    eval_queries,
    first_divergence,
    grpo_case,
    llama_greedy,
    llama_logits,
    mlx_grpo_step,
    top_two,
    trl_grpo_step,
)

from qmd_ft.backend import TrainRequest  # noqa: E402
from qmd_ft.backends.cuda import BACKEND as CUDA  # noqa: E402
from qmd_ft.backends.cuda import generate as cuda_generate  # noqa: E402
from qmd_ft.backends.cuda.grpo import rubric_reward, run_grpo  # noqa: E402
from qmd_ft.backends.cuda.loading import (  # noqa: E402
    load_merged,
    load_model,
    load_tokenizer,
    stop_token_ids,
)
from qmd_ft.backends.cuda.sft import IGNORE_INDEX, run_sft  # noqa: E402
from qmd_ft.backends.mlx import BACKEND as MLX  # noqa: E402
from qmd_ft.backends.mlx import generate as mlx_generate  # noqa: E402
from qmd_ft.backends.mlx import grpo as mlx_grpo  # noqa: E402
from qmd_ft.backends.mlx.adapters import lora_weights, mlx_adapter_to_peft, peft_to_mlx_adapter  # noqa: E402
from qmd_ft.backends.mlx.dataset import pad_batch, read_split, tokenize  # noqa: E402
from qmd_ft.backends.mlx.grpo_loss import LOSS_TYPES  # noqa: E402
from qmd_ft.backends.mlx.models import add_lora, load_stack, lora_keys  # noqa: E402
from qmd_ft.backends.mlx.sft import completion_loss  # noqa: E402
from qmd_ft.config import Config, EvalConfig, GrpoConfig, load_config  # noqa: E402
from qmd_ft.data.prepare import prepare  # noqa: E402
from qmd_ft.prompt import (  # noqa: E402
    IM_END,
    THINK_CLOSE,
    THINK_OPEN,
    messages,
    render_example,
    render_prompt,
    strip_think,
)
from qmd_ft.reward import query_from_prompt  # noqa: E402
from qmd_ft.tiny_model import BUILTIN_EXAMPLES  # noqa: E402

QUERIES = eval_queries(20)
PROMPTS = [render_prompt(q) for q in QUERIES]
GEN = EvalConfig(max_new_tokens=96)
"""Eval's own settings (greedy, batches of 16, so left padding is exercised), shorter answers."""

FORWARD_ATOL = 1e-4
"""Stage 1: max |logit difference|, fp32, transformers vs mlx-lm."""
NEAR_TIE = 1e-4
"""Stage 2: a greedy divergence is accepted only where the top two logits are this close."""
SFT_RTOL = 1e-4
"""Stage 3: |loss difference| / loss."""
GRPO_ATOL = 1e-5
"""Stage 4: advantages, step loss and logged kl (absolute); the gradient with respect to the
log-probs (max |difference| / max |gradient|)."""
ADAPTER_ATOL = 1e-4
"""Stage 5: max |logit difference| between an adapter and its conversion."""
GGUF_F32_ATOL = 1e-3
"""Stage 7: f32 file, max |logit difference| with transformers (f32 KV cache)."""
GGUF_F16_RTOL = 1e-2
"""Stage 7: f16 file, max |logit difference| / max |transformers logit| (f32 KV cache), the
bound of qmd_ft.gguf.verify's release gate. f16 rounds each weight by up to 4.9e-4 (relative);
through 4 layers that measures ~2e-3 here, while a wrong tensor, RoPE or tokenizer moves the
logits by the order of the logits themselves."""

GGUF_GREEDY_RTOL = 1e-2
"""Stage 7 greedy: the gguf eval backend runs llama.cpp's default f16 KV cache, which moves even
an f32 file's logits (by ~6e-4 of the largest here). A greedy flip is accepted only where the
file's logits at that step are within this fraction of max |logit| of transformers' and the two
tokens are both sides' top two: the flip is then a near-tie resolved by tolerated rounding."""

SUPPORTED_LOSS_TYPES = typing.get_args(GrpoConfig.model_fields["loss_type"].annotation)
CONFIG_LOSS = "as configs/grpo.yaml selects"


def report(stage: str, text: str) -> None:
    """One measured value, for the run's log."""
    print(f"[parity] {stage}: {text}")


def hf_logits(model: torch.nn.Module, ids: list[int]) -> np.ndarray:
    """fp32 logits of one sequence in transformers: (len(ids), vocab)."""
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def mlx_logits(model: typing.Any, ids: list[int]) -> np.ndarray:
    """fp32 logits of one sequence in mlx-lm: (len(ids), vocab)."""
    return np.array(model(mx.array([ids]))[0].astype(mx.float32))


# ---------------------------------------------------------------------------- shared fixtures


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The fine-tuned tiny model (an HF directory, float32 weights)."""
    return memorized_model(tmp_path_factory, tiny_model_dir)


@pytest.fixture(scope="module")
def hf(model_dir: Path) -> tuple[typing.Any, torch.nn.Module]:
    """(tokenizer, model) as the cuda backend loads them, fp32 on the CPU."""
    return load_tokenizer(model_dir), load_model(model_dir, torch.float32).eval()


@pytest.fixture(scope="module")
def mlxlm(model_dir: Path) -> tuple[typing.Any, typing.Any]:
    """(tokenizer, model) as the mlx backend loads them."""
    model, tokenizer, _ = load_stack(str(model_dir))
    model.eval()
    return tokenizer, model


@dataclass(frozen=True)
class Generated:
    """One backend's completions of PROMPTS: eval texts, and the generated token ids (the stop
    token included where the model stopped)."""

    texts: list[str]
    tokens: list[list[int]]


@pytest.fixture(scope="module")
def generations(model_dir: Path) -> dict[str, Generated]:
    """Both backends' `generator` on PROMPTS; each one's token ids are read where it decodes."""
    cuda_tokens: list[list[int]] = []
    mlx_tokens: list[list[int]] = []
    real_cut, real_batch = cuda_generate.cut_at_stop, mlx_generate.generate_batch

    def cut_at_stop(ids: list[int], stops: set[int]) -> list[int]:
        kept = real_cut(ids, stops)
        cuda_tokens.append(list(ids[: len(kept) + 1]))
        return kept

    def generate_batch(*args: typing.Any, **kwargs: typing.Any) -> list[typing.Any]:
        samples = real_batch(*args, **kwargs)
        mlx_tokens.extend(list(s.tokens) for s in samples)
        return samples

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cuda_generate, "cut_at_stop", cut_at_stop)
        mp.setattr(mlx_generate, "generate_batch", generate_batch)
        cuda_texts = CUDA.generator(str(model_dir), [], GEN, "cpu")(PROMPTS)
        mlx_texts = MLX.generator(str(model_dir), [], GEN)(PROMPTS)
    assert len(cuda_tokens) == len(mlx_tokens) == len(PROMPTS)
    return {
        "cuda": Generated(cuda_texts, cuda_tokens),
        "mlx": Generated(mlx_texts, mlx_tokens),
    }


# ---------------------------------------------------------------------------- 1. forward


def test_forward_same_weights_same_logits_and_tokens(hf, mlxlm) -> None:
    tokenizer, model = hf
    mlx_tokenizer, mlx_model = mlxlm
    for query, prompt in zip(QUERIES, PROMPTS, strict=True):
        chat = tokenizer.apply_chat_template(
            messages(query), add_generation_prompt=True, tokenize=False
        )
        assert chat == prompt, f"stage 1 (tokenization): {query!r}: chat template renders {chat!r}"
        ids = tokenizer(prompt)["input_ids"]
        views = {
            "mlx-lm tokenizer": mlx_tokenizer.encode(prompt),
            "transformers chat template": list(
                tokenizer.apply_chat_template(messages(query), add_generation_prompt=True)[
                    "input_ids"
                ]
            ),
            "mlx-lm chat template": list(
                mlx_tokenizer.apply_chat_template(messages(query), add_generation_prompt=True)
            ),
        }
        for name, other in views.items():
            at = first_divergence(ids, other)
            assert at is None, (
                f"stage 1 (tokenization): {query!r}: {name} differs from transformers' "
                f"tokenizer at token {at}: {other[at : at + 5]} vs {ids[at : at + 5]}"
            )

    # The prompts, and whole training texts (prompt + answer) for longer positions.
    texts = PROMPTS + [render_example(q, c) for q, c in EXAMPLES[:4]]
    worst, scale = 0.0, 0.0
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        expected = hf_logits(model, ids)
        diff = float(np.abs(mlx_logits(mlx_model, ids) - expected).max())
        assert diff < FORWARD_ATOL, (
            f"stage 1 (forward): max |logit diff| transformers vs mlx-lm {diff:.3g} >= "
            f"{FORWARD_ATOL:g} on {text[:60]!r} ({len(ids)} tokens)"
        )
        worst, scale = max(worst, diff), max(scale, float(np.abs(expected).max()))
    report(
        "1 forward",
        f"max |logit diff| {worst:.2e} over {len(texts)} sequences (max |logit| {scale:.1f})",
    )


# ---------------------------------------------------------------------------- 2. generation


def test_greedy_generation_is_the_same_on_both_backends(generations, hf, mlxlm) -> None:
    tokenizer, model = hf
    _, mlx_model = mlxlm
    cuda, mlx = generations["cuda"], generations["mlx"]
    empty = [q for q, a, b in zip(QUERIES, cuda.texts, mlx.texts, strict=True) if not (a and b)]
    assert not empty, f"stage 2 (generation): empty completions for {empty}"
    assert len(set(cuda.texts)) >= len(QUERIES) // 2, "stage 2: the model barely varies its output"

    accepted, failures = [], []
    closest = np.inf
    for i, (query, a, b) in enumerate(zip(QUERIES, cuda.tokens, mlx.tokens, strict=True)):
        prompt_ids = tokenizer(PROMPTS[i])["input_ids"]
        # Margin along the cuda path: the top-two gap at every generated step.
        steps = hf_logits(model, prompt_ids + a)[len(prompt_ids) - 1 : len(prompt_ids) - 1 + len(a)]
        closest = min(closest, min(top_two(step)[2] for step in steps))
        at = first_divergence(a, b)
        if at is None:
            if cuda.texts[i] != mlx.texts[i]:
                failures.append(
                    f"{query!r}: same tokens, different text: {cuda.texts[i]!r} vs {mlx.texts[i]!r}"
                )
            continue
        context = prompt_ids + a[:at]
        hf_step, mlx_step = hf_logits(model, context)[-1], mlx_logits(mlx_model, context)[-1]
        (h1, h2, hf_gap), (m1, m2, mlx_gap) = top_two(hf_step), top_two(mlx_step)
        chosen = (a[at] if at < len(a) else None, b[at] if at < len(b) else None)
        tie = max(hf_gap, mlx_gap) < NEAR_TIE and set(chosen) == {h1, h2} == {m1, m2}
        line = (
            f"{query!r}: completion token {at}: cuda {chosen[0]} vs mlx {chosen[1]}; top two "
            f"{h1}/{h2} (transformers, gap {hf_gap:.2e}), {m1}/{m2} (mlx-lm, gap {mlx_gap:.2e}); "
            f"max |logit diff| at that step {np.abs(hf_step - mlx_step).max():.2e}"
        )
        (accepted if tie else failures).append(line)
    stopped = sum(t[-1] == tokenizer.convert_tokens_to_ids(IM_END) for t in cuda.tokens)
    report(
        "2 generation",
        f"{len(QUERIES) - len(accepted) - len(failures)}/{len(QUERIES)} identical, "
        f"{len(accepted)} accepted near-tie(s) {accepted}; {stopped} stopped at <|im_end|>, "
        f"mean {np.mean([len(t) for t in cuda.tokens]):.0f} tokens; "
        f"smallest top-two gap on the greedy paths {closest:.2e}",
    )
    assert not failures, (
        f"stage 2 (greedy generation) diverged where the top two logits differ by >= "
        f"{NEAR_TIE:g}:\n" + "\n".join(failures)
    )


# ---------------------------------------------------------------------------- 3. SFT loss


@pytest.fixture(scope="module")
def sft_setup(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Path]:
    """configs/sft.yaml on the fine-tuned tiny model, and prepared data the model has not
    memorized (so per-token losses vary and a masking mistake would move the mean)."""
    root = tmp_path_factory.mktemp("parity-sft")
    source = write_examples(root / "raw" / "examples.jsonl", list(BUILTIN_EXAMPLES))
    data = prepare([source], root / "data", None, val_fraction=0.0, seed=0).out_dir
    overrides = {"model": {"base": str(model_dir), "output": str(root / "out")}}
    return load_config(ROOT / "configs" / "sft.yaml", overrides), data


def test_sft_loss_trl_completion_only_equals_mlx_masked_loss(sft_setup) -> None:
    config, data = sft_setup
    size = config.training.batch_size
    trainer = built_trainer(
        run_sft, TrainRequest(config, data, Path(config.model.output), device="cpu"), "SFTTrainer"
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(size)])
    _, num_items = trainer.get_batch_samples(iter([batch]), 1, torch.device("cpu"))
    trainer.model.eval()  # no LoRA dropout draws: they could never agree across frameworks
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=num_items)

    # The mlx backend's SFT: same config, its own loading, tokenization, LoRA and loss.
    model, tokenizer, _ = load_stack(config.model.base, config.model.adapters)
    records = read_split(data, "train", config.dataset.max_samples)
    examples = tokenize(tokenizer, records, config.training.max_length)[:size]
    lora = config.lora
    assert lora is not None
    keys = lora_keys(model, lora.target_modules)
    add_lora(model, keys, lora.rank, lora.alpha / lora.rank, lora.dropout)
    model.eval()
    mlx_loss, mlx_tokens = completion_loss(model, *pad_batch(examples))

    for row, (ids, prompt_len) in enumerate(examples):
        keep = batch["attention_mask"][row].bool()
        trl_ids = batch["input_ids"][row][keep].tolist()
        at = first_divergence(trl_ids, ids)
        assert at is None, f"stage 3 (SFT tokens): row {row} differs at token {at}"
        trl_mask = (batch["labels"][row][keep] != IGNORE_INDEX).tolist()
        mlx_mask = [t >= prompt_len for t in range(len(ids))]
        assert trl_mask == mlx_mask, (
            f"stage 3 (SFT mask): row {row}: TRL trains {sum(trl_mask)} tokens from "
            f"{trl_mask.index(True)}, mlx {sum(mlx_mask)} from {prompt_len}"
        )
    assert int(num_items) == int(mlx_tokens.item()), "stage 3: different token counts"
    rel = abs(trl_loss.item() - mlx_loss.item()) / trl_loss.item()
    report(
        "3 SFT loss",
        f"TRL {trl_loss.item():.6f} vs mlx {mlx_loss.item():.6f} over {int(num_items)} "
        f"completion tokens of {size} rows: relative diff {rel:.2e}",
    )
    assert rel < SFT_RTOL, (
        f"stage 3 (SFT loss): TRL {trl_loss.item():.6f} vs mlx {mlx_loss.item():.6f}, "
        f"relative diff {rel:.2e} >= {SFT_RTOL:g}"
    )


# ---------------------------------------------------------------------------- 4. GRPO loss


def grpo_config(model_dir: Path, out: Path, loss_type: str) -> Config:
    """configs/grpo.yaml on the tiny model (no SFT stage), optionally another loss type."""
    overrides: dict[str, typing.Any] = {
        "model": {"base": str(model_dir), "sft": None, "output": str(out)}
    }
    if loss_type != CONFIG_LOSS:
        overrides["grpo"] = {"loss_type": loss_type}
    return load_config(ROOT / "configs" / "grpo.yaml", overrides)


@pytest.fixture(scope="module")
def grpo_data(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared split for the cuda backend's GRPO data loading (not what the loss sees)."""
    root = tmp_path_factory.mktemp("parity-grpo")
    source = write_examples(root / "raw" / "examples.jsonl")
    return prepare([source], root / "data", None, val_fraction=0.0, seed=0).out_dir


@dataclass(frozen=True)
class GrpoSteps:
    """One random case shaped by a config, through TRL (as the cuda backend configures it, and
    with `use_bias_correction_kl` off) and through the mlx loop."""

    config: Config
    trl: StepResult
    trl_unbiased_kl_off: StepResult
    mlx: StepResult


def grpo_steps(model_dir: Path, data: Path, out: Path, loss_type: str) -> GrpoSteps:
    """The trainer run_grpo builds for `loss_type`, and both sides' step on one case."""
    config = grpo_config(model_dir, out, loss_type)
    g = config.grpo
    trainer = built_trainer(run_grpo, TrainRequest(config, data, out, device="cpu"), "GRPOTrainer")
    assert trainer.loss_type == g.loss_type and trainer.beta == g.beta
    assert trainer.epsilon_low == trainer.epsilon_high == g.epsilon
    tokenizer = trainer.processing_class
    per_step = config.training.batch_size * config.training.gradient_accumulation_steps
    prompts = [tokenizer(p)["input_ids"] for p in PROMPTS[: per_step // g.num_generations]]
    case = grpo_case(prompts, g.num_generations, width=24, seed=0)
    as_configured = trl_grpo_step(trainer, case)
    kl_off = trl_grpo_step(trainer, case, bias_corrected_kl=False)
    return GrpoSteps(config, as_configured, kl_off, mlx_grpo_step(config, case))


def max_rel(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want|."""
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("loss_type", [CONFIG_LOSS, *SUPPORTED_LOSS_TYPES])
def test_grpo_advantages_and_loss_equal_trl(
    loss_type: str, model_dir: Path, grpo_data: Path, tmp_path: Path
) -> None:
    assert set(SUPPORTED_LOSS_TYPES) == set(LOSS_TYPES), "config and mlx loop disagree on types"
    steps = grpo_steps(model_dir, grpo_data, tmp_path / "out", loss_type)
    want, got = steps.trl, steps.mlx
    stage = f"stage 4 (GRPO, loss_type {steps.config.grpo.loss_type})"
    assert np.array_equal(got.mask, want.mask), f"{stage}: completion masks differ"
    assert got.num_items == want.num_items, f"{stage}: {got.num_items} vs {want.num_items} tokens"
    adv_diff = float(np.abs(got.advantages - want.advantages).max())
    assert adv_diff < GRPO_ATOL, f"{stage}: advantages differ by up to {adv_diff:.2e}"
    loss_diff = abs(got.loss - want.loss)
    assert loss_diff < GRPO_ATOL, (
        f"{stage}: step loss mlx {got.loss:.8f} vs TRL {want.loss:.8f}, diff {loss_diff:.2e}"
    )
    kl_diff = abs(got.kl - want.kl)
    assert kl_diff < GRPO_ATOL, f"{stage}: logged kl mlx {got.kl:.6g} vs TRL {want.kl:.6g}"
    # The gradient equals TRL's where TRL computes the formula grpo_loss.py transcribes
    # (use_bias_correction_kl off); TRL as the cuda backend configures it: the next test.
    grad_rel = max_rel(got.grad, steps.trl_unbiased_kl_off.grad)
    assert grad_rel < GRPO_ATOL, (
        f"{stage}: d loss / d logprobs differ from TRL's (use_bias_correction_kl=False) by "
        f"{grad_rel:.2e} of the largest gradient"
    )
    source = " (configs/grpo.yaml)" if loss_type == CONFIG_LOSS else ""
    report(
        f"4 GRPO {steps.config.grpo.loss_type}{source}",
        f"{len(got.advantages)} completions in {steps.config.training.gradient_accumulation_steps}"
        f" micro-batches: max |Δadvantage| {adv_diff:.1e}, loss {want.loss:+.6f} |Δ| "
        f"{loss_diff:.1e}, kl |Δ| {kl_diff:.1e}, gradient (TRL use_bias_correction_kl=False) "
        f"max |Δ| / max |grad| {grad_rel:.1e}",
    )


@pytest.mark.parametrize("loss_type", [CONFIG_LOSS, *SUPPORTED_LOSS_TYPES])
def test_grpo_gradient_equals_trl_as_the_cuda_backend_configures_it(
    loss_type: str, model_dir: Path, grpo_data: Path, tmp_path: Path
) -> None:
    steps = grpo_steps(model_dir, grpo_data, tmp_path / "out", loss_type)
    want, got = steps.trl, steps.mlx
    grad_rel = max_rel(got.grad, want.grad)
    report(
        f"4 GRPO {steps.config.grpo.loss_type} gradient vs TRL as configured",
        f"max |Δgrad| / max |grad| {grad_rel:.1e}, grad norm mlx {got.grad_norm:.6g} vs TRL "
        f"{want.grad_norm:.6g}",
    )
    assert grad_rel < GRPO_ATOL, (
        f"stage 4 (GRPO gradient, loss_type {steps.config.grpo.loss_type}, TRL as the cuda "
        f"backend configures it): d loss / d logprobs differ by {grad_rel:.2e} of the largest "
        f"gradient (grad norm mlx {got.grad_norm:.6g} vs TRL {want.grad_norm:.6g}), while the "
        f"loss values agree to {abs(got.loss - want.loss):.1e}"
    )


# ---------------------------------------------------------------------------- 5. adapters

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def adapter_texts(tokenizer: typing.Any) -> list[list[int]]:
    """Token ids the adapter logits are compared on: prompts and a whole training text."""
    texts = [*PROMPTS[:2], render_example(QUERIES[0], EXAMPLES[0][1])]
    return [tokenizer(t)["input_ids"] for t in texts]


def test_mlx_adapter_converted_to_peft_gives_its_logits_in_transformers(
    model_dir: Path, hf, tmp_path: Path
) -> None:
    from mlx_lm.utils import load as mlx_lm_load
    from peft import PeftModel

    tokenizer, base = hf
    # An mlx-lm adapter directory as `mlx_lm.lora` writes it, with random A and B (B = 0, as
    # training starts, would hide every transpose or scale mistake).
    rank, scale = 8, 2.5
    model, _, _ = load_stack(str(model_dir))
    keys = lora_keys(model, TARGETS)
    add_lora(model, keys, rank, scale, 0.0)
    mx.random.seed(7)
    weights = {k: mx.random.normal(v.shape) * 0.05 for k, v in lora_weights(model).items()}
    src = tmp_path / "mlx-adapter"
    src.mkdir()
    mx.save_safetensors(str(src / "adapters.safetensors"), weights)
    lora_parameters = {"rank": rank, "scale": scale, "dropout": 0.0, "keys": keys}
    (src / "adapter_config.json").write_text(
        json.dumps(
            {
                "fine_tune_type": "lora",
                "model": str(model_dir),
                "num_layers": len(model.layers),
                "lora_parameters": lora_parameters,
            }
        )
    )
    mlx_model, _ = mlx_lm_load(str(model_dir), adapter_path=str(src))
    peft_dir = mlx_adapter_to_peft(src, tmp_path / "peft", base_model=str(model_dir))
    peft_model = PeftModel.from_pretrained(load_model(model_dir, torch.float32), str(peft_dir))
    merged = load_merged(str(model_dir), [str(peft_dir)], torch.float32)  # the cuda backend's way

    worst = effect = 0.0
    for ids in adapter_texts(tokenizer):
        expected = mlx_logits(mlx_model, ids)
        effect = max(effect, float(np.abs(expected - hf_logits(base, ids)).max()))
        for name, model_ in (("PEFT", peft_model.eval()), ("merged PEFT", merged.eval())):
            diff = float(np.abs(hf_logits(model_, ids) - expected).max())
            assert diff < ADAPTER_ATOL, (
                f"stage 5 (adapters, mlx -> PEFT): {name} in transformers vs the mlx-lm "
                f"adapter: max |logit diff| {diff:.3g} >= {ADAPTER_ATOL:g}"
            )
            worst = max(worst, diff)
    assert effect > 1e-2, f"stage 5: the adapter barely changes the logits ({effect:.2e})"
    report("5 adapters mlx->PEFT", f"max |logit diff| {worst:.2e} (adapter effect {effect:.2f})")


def test_peft_adapter_converted_to_mlx_gives_its_logits_in_mlx(
    model_dir: Path, hf, tmp_path: Path
) -> None:
    from mlx_lm.utils import load as mlx_lm_load
    from peft import LoraConfig, get_peft_model

    tokenizer, base = hf
    torch.manual_seed(0)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, init_lora_weights=False)
    peft_model = get_peft_model(load_model(model_dir, torch.float32), lora).eval()
    lora_b = [p for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().max() > 0 for p in lora_b)
    peft_model.save_pretrained(str(tmp_path / "peft"))

    num_layers = peft_model.config.num_hidden_layers
    converted = peft_to_mlx_adapter(tmp_path / "peft", tmp_path / "mlx", num_layers=num_layers)
    views = {
        "mlx-lm with the converted adapter": mlx_lm_load(
            str(model_dir), adapter_path=str(converted)
        )[0],
        "mlx backend (PEFT adapter fused)": load_stack(str(model_dir), [str(tmp_path / "peft")])[0],
    }
    worst = effect = 0.0
    for ids in adapter_texts(tokenizer):
        expected = hf_logits(peft_model, ids)
        effect = max(effect, float(np.abs(expected - hf_logits(base, ids)).max()))
        for name, model_ in views.items():
            diff = float(np.abs(mlx_logits(model_, ids) - expected).max())
            assert diff < ADAPTER_ATOL, (
                f"stage 5 (adapters, PEFT -> mlx): {name} vs PEFT in transformers: "
                f"max |logit diff| {diff:.3g} >= {ADAPTER_ATOL:g}"
            )
            worst = max(worst, diff)
    assert effect > 1e-2, f"stage 5: the adapter barely changes the logits ({effect:.2e})"
    report("5 adapters PEFT->mlx", f"max |logit diff| {worst:.2e} (adapter effect {effect:.2f})")


# ---------------------------------------------------------------------------- 6. reward


def test_reward_is_the_same_whichever_backend_generated_the_text(generations, hf, mlxlm) -> None:
    from qmd_ft.evaluation import score_row
    from qmd_ft.queries import Query

    cuda, mlx = generations["cuda"], generations["mlx"]
    tokenizer, _ = hf
    mlx_tokenizer, _ = mlxlm
    # Eval: each backend's text through the row `qmd-ft eval` writes (every sub-score).
    rows = {
        name: [score_row(Query(q, "parity", 0), t) for q, t in zip(QUERIES, gen.texts, strict=True)]
        for name, gen in generations.items()
    }

    # Training: each trainer's reward path on the same token ids as eval decoded: the cuda
    # backend's TRL reward function gets TRL's `completion_ids`, the mlx loop decodes its
    # samples and scores (query read back from the prompt, text) pairs. Same tokens, same reward.
    trl_reward = rubric_reward(tokenizer, set(stop_token_ids(tokenizer, hf[1])))
    trl_rewards = trl_reward(PROMPTS, [None] * len(PROMPTS), completion_ids=cuda.tokens)
    stops = mlx_generate.stop_ids(mlx_tokenizer)
    samples = [mlx_generate.Sample(t, t[-1] in stops) for t in mlx.tokens]
    mlx_texts = [s.text(mlx_tokenizer) for s in samples]
    rollouts = mlx_grpo.Rollouts(
        queries=[query_from_prompt(p) for p in PROMPTS],
        prompt_ids=[mlx_tokenizer.encode(p) for p in PROMPTS],
        completion_ids=mlx.tokens,
        texts=mlx_texts,
        stopped=[s.stopped for s in samples],
    )
    mlx_rewards = mlx_grpo.score(rollouts).tolist()
    for i, query in enumerate(QUERIES):
        if cuda.tokens[i] == mlx.tokens[i]:
            assert trl_rewards[i] == mlx_rewards[i], (
                f"stage 6 (GRPO reward): {query!r}: TRL reward {trl_rewards[i]} vs mlx loop "
                f"{mlx_rewards[i]} for the same tokens"
            )
    # Eval and training score a completion alike: each backend's eval row and its trainer's
    # reward, from the same tokens. Only where the two texts differ by design is a row left
    # out: eval drops closed think blocks (as QMD's eval did), the trainers score them.
    differ_by_design = set(tokenizer.convert_tokens_to_ids([THINK_OPEN, THINK_CLOSE]))
    compared = 0
    for name, gen, trained in (("cuda", cuda, trl_rewards), ("mlx", mlx, mlx_rewards)):
        for i, query in enumerate(QUERIES):
            if differ_by_design & set(gen.tokens[i]):
                continue
            compared += 1
            assert rows[name][i].reward == trained[i], (
                f"stage 6 (eval vs training reward, {name}): {query!r}: eval row "
                f"{rows[name][i].reward} for {gen.texts[i]!r} vs trainer reward {trained[i]}"
            )
    assert compared >= len(QUERIES), f"stage 6: only {compared} eval/training pairs compared"
    eval_rewards = [row.reward for row in rows["cuda"]]
    assert len(set(eval_rewards)) > 2 and max(eval_rewards) > 0, (
        f"stage 6: rewards {eval_rewards} do not vary; the check would be vacuous"
    )
    same = sum(a == b for a, b in zip(cuda.tokens, mlx.tokens, strict=True))
    report(
        "6 reward",
        f"eval rewards {min(eval_rewards):.2f}..{max(eval_rewards):.2f} "
        f"({len(set(eval_rewards))} distinct) and GRPO rewards "
        f"{min(trl_rewards):.2f}..{max(trl_rewards):.2f}; identical on {same}/{len(QUERIES)}; "
        f"eval = training reward on {compared}/{2 * len(QUERIES)} completions",
    )


# ---------------------------------------------------------------------------- 7. GGUF


@pytest.fixture(scope="module")
def gguf_files(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The fine-tuned model exported to f32 and f16 GGUF files."""
    pytest.importorskip("gguf")
    from qmd_ft.gguf.export import export_gguf
    from qmd_ft.gguf.runtime import missing_runtime, runtime_available

    if not runtime_available():
        pytest.skip(missing_runtime("stage 7 (GGUF)"))

    out = tmp_path_factory.mktemp("parity-gguf")
    return {
        kind: export_gguf(model_dir, out / f"tiny-{kind}.gguf", kind) for kind in ("f32", "f16")
    }


def gguf_bound(kind: str, reference: np.ndarray) -> float:
    """The stated logit tolerance of a file type, in absolute logits for this reference."""
    if kind == "f32":
        return GGUF_F32_ATOL
    return GGUF_F16_RTOL * float(np.abs(reference).max())


@pytest.mark.parametrize("kind", ["f32", "f16"])
def test_gguf_logits_match_transformers(kind: str, gguf_files, generations, hf) -> None:
    from qmd_ft.gguf.runtime import load

    tokenizer, model = hf
    llm = load(gguf_files[kind], n_ctx=512, logits_all=True, full_precision_cache=True)
    try:
        worst = worst_rel = 0.0
        for query, prompt, completion in zip(
            QUERIES, PROMPTS, generations["cuda"].tokens, strict=True
        ):
            ids = tokenizer(prompt)["input_ids"]
            llama_ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
            at = first_divergence(ids, llama_ids)
            assert at is None, f"stage 7 (GGUF tokens, {kind}): {query!r} differs at token {at}"
            sequence = ids + completion
            expected = hf_logits(model, sequence)
            diff = float(np.abs(llama_logits(llm, sequence) - expected).max())
            bound = gguf_bound(kind, expected)
            assert diff < bound, (
                f"stage 7 (GGUF logits, {kind}): {query!r}: max |logit diff| vs transformers "
                f"{diff:.3g} >= {bound:.3g}"
            )
            worst = max(worst, diff)
            worst_rel = max(worst_rel, diff / float(np.abs(expected).max()))
    finally:
        llm.close()
    report(
        f"7 GGUF {kind} logits",
        f"max |logit diff| {worst:.2e} (relative to max |logit| {worst_rel:.2e}) over "
        f"{len(QUERIES)} prompt+completion sequences",
    )


@pytest.mark.parametrize("kind", ["f32", "f16"])
def test_gguf_greedy_completions_match_cuda(kind: str, gguf_files, generations, hf) -> None:
    from qmd_ft.backends.gguf import BACKEND as GGUF
    from qmd_ft.backends.gguf import PROMPT_BUDGET
    from qmd_ft.gguf.runtime import load, stop_ids

    tokenizer, model = hf
    cuda = generations["cuda"]
    texts = GGUF.generator(str(gguf_files[kind]), [], GEN)(PROMPTS)
    assert all(texts), f"stage 7 (GGUF greedy, {kind}): empty completions"
    differ = [i for i, (a, b) in enumerate(zip(texts, cuda.texts, strict=True)) if a != b]

    accepted, failures = [], []
    if differ:
        # Where the texts differ, find the first differing token: the file loaded as the gguf
        # backend loads it (f16 KV cache), keeping every step's logits for argmax decoding.
        llm = load(
            gguf_files[kind],
            n_ctx=PROMPT_BUDGET + GEN.max_new_tokens,
            logits_all=True,
            seed=GEN.seed,
        )
        stops = stop_ids(llm)
        try:
            for i in differ:
                prompt_ids = tokenizer(PROMPTS[i])["input_ids"]
                ids = llama_greedy(llm, prompt_ids, GEN.max_new_tokens)
                body = ids[:-1] if ids and ids[-1] in stops else ids
                text = strip_think(llm.detokenize(body, special=True).decode("utf-8", "replace"))
                assert text == texts[i], f"stage 7 harness: argmax decoding is not what {kind} ran"
                at = first_divergence(cuda.tokens[i], ids)
                if at is None:
                    failures.append(f"{QUERIES[i]!r}: same tokens, text {texts[i]!r}")
                    continue
                mine = ids[at] if at < len(ids) else None
                theirs = cuda.tokens[i][at] if at < len(cuda.tokens[i]) else None
                context = prompt_ids + ids[:at]
                step, file_step = hf_logits(model, context)[-1], llama_logits(llm, context)[-1]
                (h1, h2, hf_gap), (f1, f2, file_gap) = top_two(step), top_two(file_step)
                diff = float(np.abs(file_step - step).max())
                bound = GGUF_GREEDY_RTOL * float(np.abs(step).max())
                line = (
                    f"{QUERIES[i]!r}: completion token {at}: transformers {theirs} vs llama.cpp "
                    f"{mine}; top two {h1}/{h2} (transformers, gap {hf_gap:.2e}), {f1}/{f2} "
                    f"(llama.cpp, gap {file_gap:.2e}); max |logit diff| at that step {diff:.2e} "
                    f"(bound {bound:.2e})"
                )
                tie = diff < bound and {theirs, mine} == {h1, h2} == {f1, f2}
                (accepted if tie else failures).append(line)
        finally:
            llm.close()
    report(
        f"7 GGUF {kind} greedy",
        f"{len(QUERIES) - len(differ)}/{len(QUERIES)} identical, "
        f"{len(accepted)} accepted near-tie(s) {accepted}",
    )
    assert not failures, f"stage 7 (GGUF greedy, {kind}) diverged beyond a near-tie:\n" + "\n".join(
        failures
    )
