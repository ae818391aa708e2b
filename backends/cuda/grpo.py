"""GRPO with TRL's GRPOTrainer on the SFT weights, rewarded by qmd_ft's rubric.

The SFT adapter is merged into the base first and a fresh LoRA is trained on top, so the frozen
merged model doubles as the KL reference (TRL computes reference log-probs with the adapter
disabled): the `beta` penalty then pulls towards the SFT model, which is what keeps GRPO from
drifting. TRL logs reward mean/std, KL and completion lengths into `trainer_state.json`; the
completions behind them go to `completions.jsonl` so a reward curve can be read back as text.
With `training.fast_generation` the rollouts come from `qmd_ft.backends.cuda.rollout` (TRL's rollout
hook), with `training.use_vllm` from TRL's colocated vLLM.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerCallback

from qmd_ft import reward as rubric
from qmd_ft.backend import TrainRequest
from qmd_ft.backends.cuda.data import data_hash, read_split
from qmd_ft.backends.cuda.generate import cut_at_stop
from qmd_ft.backends.cuda.loading import (
    is_adapter,
    load_merged,
    load_model,
    load_tokenizer,
    peft_lora,
    require_dir,
    resolve_device,
    stop_token_ids,
    use_bf16,
)
from qmd_ft.backends.cuda.rollout import FastRollout
from qmd_ft.backends.cuda.speed import SpeedOptions, check_speed
from qmd_ft.backends.cuda.training import (
    announce_start,
    checkpoint_to_resume,
    finish,
    guard_resume,
    last_logged,
    trainer_kwargs,
)
from qmd_ft.config import Config, check_grpo_batch
from qmd_ft.data.prepare import TRAIN_FILE
from qmd_ft.errors import UserError
from qmd_ft.reward import completion_text, query_from_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer
    from trl import GRPOConfig, GRPOTrainer

COMPLETIONS_FILE = "completions.jsonl"
SCORED_TEXT = "scored_text"
"""The completions-log column (TRL's `log_extra`) holding the text the rubric scored."""
PROMPT_FIELDS = ("prompt", "messages")
"""`prompt`: the string rendered by qmd_ft.prompt; `messages`: the user turn, rendered by the
tokenizer's chat template (checked to give the same text)."""


def check_prompt_field(cfg: Config) -> str:
    """The configured prompt field, if GRPO can read it."""
    field = cfg.dataset.prompt_field
    if field not in PROMPT_FIELDS:
        raise UserError(f"dataset.prompt_field {field!r}: GRPO reads 'prompt' or 'messages'")
    return field


def load_policy(cfg: Config, dtype: torch.dtype) -> tuple[PreTrainedModel, list[str]]:
    """The model GRPO starts from, and the artifacts it came from (for the manifest).

    `model.adapters` are merged into `model.base` first, then `model.sft` when it is a PEFT
    adapter; a full SFT model directory is used as it is (it was trained on that stack);
    without it GRPO starts from the base plus adapters. Full-parameter GRPO (no lora section)
    builds its reference model from the policy's path, so it needs the SFT weights on disk.
    """
    base, sft = cfg.model.base, cfg.model.sft
    stack = list(cfg.model.adapters)  # stacked on the base before SFT, as the mlx backend does
    if sft is not None:
        require_dir(sft, "model.sft", "train SFT first (qmd-ft train sft) or --set model.sft=DIR")
        if not is_adapter(sft):
            return load_model(Path(sft), dtype), [sft]
        stack.append(sft)
    if stack and cfg.lora is None:
        raise UserError(
            f"adapters {stack} on the base, but full-parameter GRPO (no lora section) needs a "
            "merged model: run qmd-ft merge first and point model.sft at its output"
        )
    return load_merged(base, stack, dtype), [base, *stack]


def prompt_dataset(
    cfg: Config, tokenizer: PreTrainedTokenizerBase, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """GRPO prompts from prepared rows, in the configured form, too-long prompts dropped.

    TRL 1.16 has no prompt truncation, so `grpo.max_prompt_length` is enforced by leaving out
    the (rare) longer prompts rather than training on cut-off queries.
    """
    field = check_prompt_field(cfg)
    if field == "messages":
        user_turn = [m for m in rows[0]["messages"] if m["role"] != "assistant"]
        rendered = tokenizer.apply_chat_template(
            user_turn, tokenize=False, add_generation_prompt=True
        )
        if rendered != rows[0]["prompt"]:
            raise UserError(
                "the tokenizer's chat template renders prompts differently from qmd_ft.prompt; "
                "use --set dataset.prompt_field=prompt"
            )
    limit = cfg.grpo.max_prompt_length
    kept = [row for row in rows if len(tokenizer(row["prompt"])["input_ids"]) <= limit]
    if not kept:
        raise UserError(f"every prompt is longer than grpo.max_prompt_length ({limit} tokens)")
    if len(kept) < len(rows):
        print(f"GRPO: left out {len(rows) - len(kept)} prompt(s) over {limit} tokens")
    if field == "prompt":
        return [{"prompt": row["prompt"]} for row in kept]
    return [{"prompt": [m for m in row["messages"] if m["role"] != "assistant"]} for row in kept]


def rubric_reward(
    tokenizer: PreTrainedTokenizerBase, stops: set[int]
) -> Callable[..., list[float]]:
    """The GRPO reward function: the rubric on each completion's token ids, decoded as eval does.

    TRL's own `completions` are decoded with special tokens skipped, which would hide a leaked
    `<|im_start|>` or `<|endoftext|>` (LEAK_MARKERS) from the rubric while eval, which decodes
    with them kept, scores it a failure. So the reward decodes TRL's `completion_ids` the eval
    way (up to the stop token, special tokens kept) and training and eval score one text. That
    text also goes to TRL's completion log, so `completions.jsonl` holds what was scored.
    """

    def qmd_reward(
        prompts: list[Any],
        completions: list[Any],
        completion_ids: list[list[int]],
        log_extra: Callable[[str, list[Any]], None] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        """One 0..1 reward per (prompt, completion ids); `completions` (TRL's text) unused."""
        texts = [
            tokenizer.decode(cut_at_stop(ids, stops), skip_special_tokens=False)
            for ids in completion_ids
        ]
        if log_extra is not None:
            log_extra(SCORED_TEXT, texts)
        return rubric.qmd_reward(prompts, texts)

    return qmd_reward


class CompletionLog(TrainerCallback):
    """At each log line, append the latest generation batch to `completions.jsonl`.

    Reads GRPOTrainer's `_logs` (prompts, completions and rewards gathered from every process),
    the same rows TRL prints with `log_completions` but with the text the rubric scored, as JSON
    a test or a person can re-score.
    """

    def __init__(self, trainer: Trainer, path: Path):
        self.trainer = trainer
        self.path = path

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **_: Any):
        """Write one JSON line per completion, tagged with the step its reward was logged at."""
        if not state.is_world_process_zero or "reward" not in (logs or {}):
            return
        batch = self.trainer._logs
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rewards = batch["rewards"][rubric.qmd_reward.__name__]
        scored = batch["extra"].get(SCORED_TEXT) or map(completion_text, batch["completion"])
        with self.path.open("a", encoding="utf-8") as f:
            for prompt, completion, reward, advantage in zip(
                batch["prompt"], scored, rewards, batch["advantages"], strict=True
            ):
                row = {
                    "step": state.global_step,
                    "query": query_from_prompt(prompt),
                    "completion": completion,
                    "reward": reward,
                    "advantage": advantage,
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


def grpo_args(req: TrainRequest, device: str, speed: SpeedOptions) -> GRPOConfig:
    """GRPOConfig from the config; vLLM (colocated on the training GPU) when asked for."""
    from trl import GRPOConfig

    g = req.config.grpo
    extra: dict[str, Any] = {"use_vllm": True, "vllm_mode": "colocate"} if speed.use_vllm else {}
    return GRPOConfig(
        **trainer_kwargs(req, device, evaluate=False),
        num_generations=g.num_generations,
        max_completion_length=g.max_completion_length,
        temperature=g.temperature,
        top_p=g.top_p,
        beta=g.beta,
        # The classic k3 KL penalty (TRL 1.16 defaults to the ratio-weighted variant, whose
        # gradient adds beta * KL per token); the mlx loop implements this same loss.
        use_bias_correction_kl=False,
        loss_type=g.loss_type,
        epsilon=g.epsilon,
        scale_rewards=g.scale_rewards,
        num_iterations=g.num_iterations,
        **extra,
    )


@dataclass(frozen=True)
class GrpoRun:
    """A ready GRPO trainer and what `run_grpo` needs beside it to finish the run."""

    trainer: GRPOTrainer
    tokenizer: PreTrainedTokenizerBase
    parents: list[str]


def build_grpo(
    req: TrainRequest,
    speed: SpeedOptions | None = None,
    callbacks: list[TrainerCallback] | None = None,
) -> GrpoRun:
    """The GRPO trainer of `req`, with the fast rollout hook when `fast_generation` is on.

    `speed` None reads the switches from the config; `callbacks` join the trainer's own.
    """
    from datasets import Dataset
    from trl import GRPOTrainer

    cfg = req.config
    device = resolve_device(req.device)
    speed = SpeedOptions.from_config(cfg) if speed is None else speed
    check_speed(speed, device)
    check_grpo_batch(cfg, int(os.environ.get("WORLD_SIZE", "1")))  # TRL: a bare ValueError
    args = grpo_args(req, device, speed)
    rows = read_split(req.data_dir, TRAIN_FILE, cfg.dataset.max_samples)

    tokenizer = load_tokenizer(cfg.model.base, padding_side="left")
    dataset = Dataset.from_list(prompt_dataset(cfg, tokenizer, rows))
    # As in SFT: a bf16 frozen model under LoRA, fp32 master weights for full fine-tuning.
    bf16_base = cfg.lora is not None and use_bf16(device)
    model, parents = load_policy(cfg, torch.bfloat16 if bf16_base else torch.float32)
    rollout = None
    if speed.fast_generation:
        rollout = FastRollout(tokenizer, compile=speed.compile_generation)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[rubric_reward(tokenizer, set(stop_token_ids(tokenizer, model)))],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_lora(cfg.lora) if cfg.lora is not None else None,
        callbacks=callbacks,
        rollout_func=rollout,
    )
    trainer.add_callback(CompletionLog(trainer, req.output_dir / COMPLETIONS_FILE))
    return GrpoRun(trainer, tokenizer, parents)


def run_grpo(
    req: TrainRequest,
    speed: SpeedOptions | None = None,
    callbacks: list[TrainerCallback] | None = None,
) -> Path:
    """Train a fresh LoRA (or all weights) with GRPO; save it in `req.output_dir`."""
    checkpoint = checkpoint_to_resume(req.output_dir, req.resume)
    run = build_grpo(req, speed, callbacks)
    trainer = run.trainer
    announce_start(req, checkpoint)
    guard_resume(trainer, checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    metrics = {
        key: last_logged(trainer, key)
        for key in ("loss", "reward", "reward_std", "kl", "completions/mean_length")
    }
    cfg = req.config
    return finish(
        trainer,
        run.tokenizer,
        req,
        "grpo-adapter" if cfg.lora is not None else "grpo-model",
        data_sha256=data_hash(req.data_dir),
        parents=run.parents,
        metrics=metrics,
    )
