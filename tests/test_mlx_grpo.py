"""mlx backend GRPO: TRL-equal advantages and loss, the step, the loop, resume.

Parity with TRL 1.16 is checked against TRL's own code: `GRPOTrainer._compute_loss` runs on a
stub trainer holding only what it reads, with the same log-probs; losses, gradients and
metrics must agree. The loop tests need rewards that differ within a group, which a random
model never earns (every line of its output is invalid), so they start from a small tiny
model taught the `/only:lex` format by a short SFT run.
"""

from __future__ import annotations

import collections
import json
import shutil
import types
from pathlib import Path

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
pytest.importorskip("mlx_lm")

from mlx.utils import tree_flatten  # noqa: E402

from qmd_ft.backend import TrainRequest  # noqa: E402
from qmd_ft.backends.mlx.generate import Sample  # noqa: E402
from qmd_ft.backends.mlx.grpo import (  # noqa: E402
    LossSettings,
    completion_logprobs,
    grpo,
    make_plan,
    pack,
    sample,
    train_step,
)
from qmd_ft.backends.mlx.grpo_loss import group_advantages, grpo_loss  # noqa: E402
from qmd_ft.backends.mlx.models import add_lora, load_stack, lora_keys  # noqa: E402
from qmd_ft.backends.mlx.optim import make_optimizer  # noqa: E402
from qmd_ft.backends.mlx.sft import sft  # noqa: E402
from qmd_ft.config import GrpoConfig, TrainingConfig, load_config  # noqa: E402
from qmd_ft.data.prepare import prepare  # noqa: E402
from qmd_ft.errors import UserError  # noqa: E402
from qmd_ft.prompt import IM_END, IM_START, render_prompt  # noqa: E402
from qmd_ft.reward import reward  # noqa: E402
from qmd_ft.tiny_model import build_tiny_model  # noqa: E402

LEX_EXAMPLES = (
    ("rust error handling", "lex: rust error handling result\nlex: rust panic unwrap"),
    ("git rebase vs merge", "lex: git rebase merge history\nlex: git merge commit"),
    ("kubernetes pod restart loop", "lex: kubernetes pod crashloopbackoff\nlex: kubectl restart"),
    ("python async database", "lex: python asyncio database driver\nlex: asyncpg query await"),
    ("vim search and replace", "lex: vim substitute command\nlex: vim find replace regex"),
    ("sourdough starter feeding", "lex: sourdough starter feeding ratio\nlex: levain flour water"),
    ("marie curie discoveries", "lex: marie curie radium polonium\nlex: curie nobel prize"),
    (
        "budget spreadsheet template",
        "lex: budget spreadsheet template\nlex: monthly expense tracker",
    ),
)
SMALL = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
}


# ---------------------------------------------------------------------------- parity with TRL


class _Accelerator:
    """One process: reductions and gathers are the identity."""

    num_processes = 1

    def reduce(self, tensor, reduction="sum"):
        return tensor

    def gather(self, tensor):
        return tensor


def trl_compute_loss(lp, old, ref, adv, mask, *, beta, loss_type, accum=1, num_items=None):
    """(loss, d loss / d logprobs, metrics) from TRL's own `GRPOTrainer._compute_loss`."""
    torch = pytest.importorskip("torch")
    trl = pytest.importorskip("trl.trainer.grpo_trainer")
    logps = torch.tensor(lp, requires_grad=True)
    trainer = types.SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logps, torch.zeros_like(logps), None),
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level="token",
        beta=beta,
        args=types.SimpleNamespace(
            use_bias_correction_kl=False, delta=None, steps_per_generation=accum
        ),
        loss_type=loss_type,
        epsilon_low=0.2,
        epsilon_high=0.2,
        use_vllm=False,
        model=types.SimpleNamespace(training=True),
        current_gradient_accumulation_steps=accum,
        accelerator=_Accelerator(),
        max_completion_length=12,
        _entropy_bonus_enabled=False,
        aux_loss_enabled=False,
        _metrics={"train": collections.defaultdict(list)},
    )
    rows, width = lp.shape
    inputs = {
        "prompt_ids": torch.zeros(rows, 2, dtype=torch.long),
        "prompt_mask": torch.ones(rows, 2, dtype=torch.long),
        "completion_ids": torch.zeros(rows, width, dtype=torch.long),
        "completion_mask": torch.tensor(mask, dtype=torch.long),
        "advantages": torch.tensor(adv),
        "num_items_in_batch": torch.tensor(float(mask.sum() if num_items is None else num_items)),
        "ref_per_token_logps": torch.tensor(ref),
    }
    if old is not None:
        inputs["old_per_token_logps"] = torch.tensor(old)
    loss = trl.GRPOTrainer._compute_loss(trainer, None, inputs)
    loss.backward()
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    return loss.item(), logps.grad.numpy(), metrics


def random_batch(seed: int, rows: int = 8, width: int = 9):
    """Log-probs (current, old, reference), a ragged mask and rewards in groups of 4."""
    rng = np.random.default_rng(seed)
    lp = (rng.normal(size=(rows, width)) * 0.5 - 2).astype(np.float32)
    old = (lp + rng.normal(size=(rows, width)) * 0.3).astype(np.float32)
    ref = (lp + rng.normal(size=(rows, width)) * 0.2).astype(np.float32)
    lengths = rng.integers(1, width + 1, size=rows)
    mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.float32)
    return lp, old, ref, mask, rng.random(rows).astype(np.float32)


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
def test_group_advantages_match_trl(scale_rewards: str) -> None:
    """TRL 1.16's advantage lines (sum_then_normalize, one reward function), transcribed."""
    torch = pytest.importorskip("torch")
    nanstd = pytest.importorskip("trl.trainer.utils").nanstd
    rewards = torch.tensor([0.1, 0.5, 0.5, 0.9, 0.3, 0.3, 0.3, 0.3, 0.0, 1.0, 0.2, 0.7])
    g = 4
    mean = torch.nanmean(rewards.view(-1, g), dim=1).repeat_interleave(g, dim=0)
    if scale_rewards == "batch":
        std = nanstd(rewards).expand_as(rewards)
    else:
        std = nanstd(rewards.view(-1, g), dim=1).repeat_interleave(g, dim=0)
    expected = rewards - mean
    if scale_rewards != "none":
        expected = expected / (std + 1e-4)
    got = group_advantages(rewards.numpy(), g, scale_rewards)
    assert np.allclose(got, expected.numpy(), atol=1e-6)


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "bnpo", "dr_grpo"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("with_old", [False, True])
def test_grpo_loss_matches_trl(loss_type: str, beta: float, with_old: bool) -> None:
    lp, old, ref, mask, rewards = random_batch(0)
    adv = group_advantages(rewards, 4, "group")
    old_in = old if with_old else None
    want_loss, want_grad, want_metrics = trl_compute_loss(
        lp, old_in, ref, adv, mask, beta=beta, loss_type=loss_type
    )

    def loss_of(x):
        return grpo_loss(x, old_in, ref, adv, mask, beta, 0.2, loss_type, max_completion_length=12)

    loss, metrics = loss_of(mx.array(lp))
    grad = mx.grad(lambda x: loss_of(x)[0])(mx.array(lp))
    assert loss.item() == pytest.approx(want_loss, abs=1e-6)
    assert np.abs(np.array(grad) - want_grad).max() < 1e-6
    assert metrics.keys() == want_metrics.keys() - {
        "entropy",
        "clip_ratio/low_min",
        "clip_ratio/high_max",
    }
    for key, value in metrics.items():
        assert value.item() == pytest.approx(want_metrics[key], abs=1e-6), key
    if with_old:
        assert metrics["clip_ratio/region_mean"].item() > 0  # the clipped branch was exercised


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "bnpo", "dr_grpo"])
def test_accumulated_micro_batches_sum_like_trl(loss_type: str) -> None:
    """Two micro-batches of one generation batch, scaled as TRL scales them (accum = 2)."""
    lp, old, ref, mask, rewards = random_batch(1)
    adv = group_advantages(rewards, 4, "group")
    items = float(mask.sum())
    want = got = 0.0
    for part in (slice(0, 4), slice(4, 8)):
        args = (lp[part], old[part], ref[part], adv[part], mask[part])
        want += trl_compute_loss(*args, beta=0.04, loss_type=loss_type, accum=2, num_items=items)[0]
        loss, _ = grpo_loss(
            *args,
            0.04,
            0.2,
            loss_type,
            num_items=items,
            accumulation_steps=2,
            max_completion_length=12,
        )
        got += loss.item()
    assert got == pytest.approx(want, abs=1e-6)


# ---------------------------------------------------------------------------- the pieces


def policy_with_lora(model_dir: Path):
    """The tiny model with LoRA whose B is random (so a step that moves nothing is visible)."""
    model, tokenizer, _ = load_stack(str(model_dir))
    add_lora(model, lora_keys(model, ["q_proj", "v_proj"]), 4, 2.0, 0.0)
    mx.random.seed(5)
    b = {k: mx.random.normal(v.shape) * 0.1 for k, v in tree_flatten(model.trainable_parameters())}
    model.load_weights(list(b.items()), strict=False)
    return model, tokenizer


def synthetic_batch(tokenizer, completions: int = 4):
    """Two prompts with `completions` random completions each, of different lengths."""
    rng = np.random.default_rng(0)
    prompts = [tokenizer.encode(render_prompt(q)) for q in ("rust error handling", "vim")]
    prompt_ids = [p for p in prompts for _ in range(completions)]
    completion_ids = [rng.integers(10, 900, size=3 + i).tolist() for i in range(len(prompt_ids))]
    return pack(prompt_ids, completion_ids), prompt_ids, completion_ids


def test_packed_logprobs_equal_unpadded_ones(tiny_model_dir: Path) -> None:
    model, tokenizer = policy_with_lora(tiny_model_dir)
    batch, prompt_ids, completion_ids = synthetic_batch(tokenizer)
    packed = np.array(completion_logprobs(model, batch, temperature=0.7))
    for row, (p, c) in enumerate(zip(prompt_ids, completion_ids, strict=True)):
        logits = model(mx.array([p + c])[:, :-1]).astype(mx.float32)[0] / 0.7
        logps = np.array(logits - mx.logsumexp(logits, axis=-1, keepdims=True))
        want = [logps[len(p) - 1 + j, token] for j, token in enumerate(c)]
        assert np.abs(packed[row, : len(c)] - want).max() < 1e-5


def test_zero_advantages_and_no_kl_leave_parameters_unmoved(tiny_model_dir: Path) -> None:
    model, tokenizer = policy_with_lora(tiny_model_dir)
    batch, _, _ = synthetic_batch(tokenizer)
    settings = LossSettings(
        beta=0.0, epsilon=0.2, loss_type="dapo", temperature=1.0, max_completion_length=16
    )
    optimizer = make_optimizer(TrainingConfig(learning_rate=0.1), total_steps=10)
    before = {k: np.array(v) for k, v in tree_flatten(model.trainable_parameters())}

    metrics = train_step(
        model, optimizer, batch, mx.zeros(8), None, None, settings, micro_batches=2
    )
    after = dict(tree_flatten(model.trainable_parameters()))
    assert metrics["loss"] == 0.0 and metrics["grad_norm"] == 0.0
    assert all(np.array_equal(before[k], np.array(after[k])) for k in before)

    advantages = mx.array([1.0, -1.0, 0.5, -0.5, 1.0, -1.0, 0.5, -0.5])
    train_step(model, optimizer, batch, advantages, None, None, settings, micro_batches=2)
    moved = dict(tree_flatten(model.trainable_parameters()))
    assert any(not np.array_equal(before[k], np.array(moved[k])) for k in before)


def test_sample_gives_g_completions_per_prompt_decoded_like_eval(tiny_model_dir: Path) -> None:
    model, tokenizer, _ = load_stack(str(tiny_model_dir))
    rows = [{"prompt": render_prompt(q)} for q in ("rust error handling", "Marie Curie")]
    g = GrpoConfig(num_generations=3, max_completion_length=12)
    mx.random.seed(0)
    rollouts = sample(model, tokenizer, rows, g)
    assert rollouts.queries == ["rust error handling"] * 3 + ["Marie Curie"] * 3
    for ids, text, stopped in zip(
        rollouts.completion_ids, rollouts.texts, rollouts.stopped, strict=True
    ):
        assert len(ids) <= 12 and stopped == (ids[-1] in tokenizer.eos_token_ids)
        body = ids[:-1] if stopped else ids
        assert text == tokenizer.decode(body, skip_special_tokens=False)


def test_a_leaked_special_token_reaches_the_reward(tiny_model_dir: Path) -> None:
    """The rubric fails chat template leakage; decoding with special tokens skipped hid it."""
    _, tokenizer, _ = load_stack(str(tiny_model_dir))
    text = "lex: auth config\n<|im_start|>assistant\nvec: how to configure auth"
    ids = [*tokenizer.encode(text), tokenizer.convert_tokens_to_ids(IM_END)]
    assert IM_START not in tokenizer.decode(ids, skip_special_tokens=True)
    stopped = Sample(ids, stopped=True)
    assert stopped.text(tokenizer) == text and reward("auth config", stopped.text(tokenizer)) == 0
    assert Sample(ids, stopped=False).text(tokenizer) == text + IM_END


def test_plan_needs_whole_groups_per_step() -> None:
    cfg = load_config(None, {"training": {"batch_size": 3}, "grpo": {"num_generations": 4}})
    with pytest.raises(UserError, match=r"multiple of grpo\.num_generations"):
        make_plan(cfg, num_prompts=10, max_steps=None)
    ok = load_config(
        None, {"training": {"batch_size": 4, "gradient_accumulation_steps": 2, "epochs": 2}}
    )
    assert make_plan(ok, num_prompts=10, max_steps=None).total_steps == 10  # 5 rounds x 2 epochs


# ---------------------------------------------------------------------------- the loop


@pytest.fixture(scope="module")
def lex_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model dir, prepared data): a small tiny Qwen3 fully fine-tuned on `/only:lex` examples
    until its sampled completions earn different rewards."""
    root = tmp_path_factory.mktemp("lex")
    base = build_tiny_model(root / "base", seed=0, **SMALL)
    src = root / "lex.jsonl"
    src.write_text(
        "".join(
            json.dumps({"input": f"{q} /only:lex", "output": c}) + "\n" for q, c in LEX_EXAMPLES
        )
    )
    data = prepare([src], root / "data", None, val_fraction=0.0, seed=0).out_dir
    cfg = load_config(
        None,
        {
            "model": {"base": str(base), "output": str(root / "sft")},
            "training": {
                "batch_size": 8,
                "learning_rate": 1e-2,
                "lr_scheduler": "constant",
                "logging_steps": 20,
            },
        },
    )
    return sft(TrainRequest(cfg, data, root / "sft", max_steps=60)), data


def grpo_request(
    model: Path, data: Path, out: Path, steps: int, resume: bool = False
) -> TrainRequest:
    """GRPO with a fresh LoRA: 8 completions per step (2 prompts x G 4), 2 micro-batches."""
    cfg = load_config(
        None,
        {
            "model": {"base": str(model), "output": str(out)},
            "training": {
                "batch_size": 4,
                "gradient_accumulation_steps": 2,
                "learning_rate": 1e-2,
                "logging_steps": 1,
                "save_steps": 1,
            },
            "grpo": {"num_generations": 4, "max_completion_length": 16},
            "lora": {"rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        },
    )
    return TrainRequest(cfg, data, out, max_steps=steps, resume=resume)


def test_grpo_run_changes_adapter_and_logs_true_rewards(
    lex_setup: tuple[Path, Path], tmp_path: Path
) -> None:
    model, data = lex_setup
    out = grpo(grpo_request(model, data, tmp_path / "grpo", steps=3))

    weights = mx.load(str(out / "adapter_model.safetensors"))
    lora_b = [v for k, v in weights.items() if ".lora_B." in k]
    assert lora_b and any(mx.abs(b).max().item() > 0 for b in lora_b)  # B starts at zero

    rows = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * 8
    for row in rows:
        assert row["reward"] == reward(row["query"], row["completion"])
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    for record in log:
        step_rewards = [r["reward"] for r in rows if r["step"] == record["step"]]
        assert record["reward"] == pytest.approx(np.mean(step_rewards))
        assert record["reward_std"] == pytest.approx(np.std(step_rewards, ddof=1))
        for key in ("loss", "kl", "completions/mean_length", "grad_norm", "learning_rate"):
            assert np.isfinite(record[key]), key
    assert max(r["reward_std"] for r in log) > 0  # the loop had a signal to learn from

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "grpo-adapter" and manifest["metrics"]["global_step"] == 3
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 3


def test_grpo_resume_equals_uninterrupted_run(lex_setup: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = lex_setup
    whole = grpo(grpo_request(model, data, tmp_path / "whole", steps=3))
    cut = tmp_path / "cut"
    shutil.copytree(whole, cut)
    # As if killed after the step-2 checkpoint: checkpoint-3 and the final outputs (written only
    # at the end) do not exist yet, so they must come from the resumed run, not from the copy.
    # The logs keep their step-3 lines: resuming must drop them and write that step again.
    for path in cut.iterdir():
        if path.name not in ("checkpoint-2", "log.jsonl", "completions.jsonl"):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    # Its schedule was planned for 3 steps: resuming towards another total is refused.
    with pytest.raises(UserError, match="planned for 3 steps"):
        grpo(grpo_request(model, data, cut, steps=4, resume=True))
    grpo(grpo_request(model, data, cut, steps=3, resume=True))

    a = mx.load(str(whole / "adapter_model.safetensors"))
    b = mx.load(str(cut / "adapter_model.safetensors"))
    assert all(mx.allclose(a[k], b[k], atol=1e-6).item() for k in a)
    assert (whole / "completions.jsonl").read_text() == (cut / "completions.jsonl").read_text()
    assert [json.loads(line)["step"] for line in (cut / "log.jsonl").read_text().splitlines()] == [
        1,
        2,
        3,
    ]
