"""GRPO rollouts through TRL's `rollout_func` hook: the policy's LoRA merged, a static cache.

TRL's own rollout runs HF `generate` on the PEFT-wrapped policy: every projection pays the LoRA
detour, the cache grows by concatenation and every step syncs with the GPU. GRPO at QMD's
settings spends most of each optimizer step there. `FastRollout` instead generates with a
*generation twin*: a plain transformers model that shares every frozen tensor of the policy and
holds its own copy of just the LoRA-targeted weights, set to base + LoRA delta after each
optimizer step. The twin runs on `fastgen.StaticDecoder` (static KV cache, all completions of the
generation batch in one call, optionally compiled into CUDA graphs).

TRL's contract (trl 1.16, `GRPOTrainer._generate`): the hook gets the prompts of this process's
generation batch (each already repeated `num_generations` times by TRL's sampler) and the
trainer, and returns `prompt_ids`, `completion_ids` (each ending at its stop token, kept, as
TRL's own path does) and `logprobs` (None here: TRL then recomputes what it needs with the
training model, as on its default path; importance-sampling correction is vLLM-only).

The twin samples from the same weights the trainer scores, up to bf16 rounding of the merge.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from qmd_ft.backends.cuda.fastgen import Sampling, StaticDecoder
from qmd_ft.errors import UserError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from transformers import PreTrainedModel, PreTrainedTokenizerBase
    from trl import GRPOTrainer


class GenerationTwin:
    """A plain model with the policy's current weights, LoRA merged, for generation only.

    Frozen tensors are shared (no copy); only the LoRA-targeted weights get their own storage,
    refreshed in place by `sync` (so a captured CUDA graph keeps pointing at them). A full
    fine-tuning policy (no PEFT) is its own twin: its weights already are the policy.
    """

    def __init__(self, policy: PreTrainedModel):
        from peft import PeftModel
        from peft.tuners.lora import LoraLayer

        self._merged: dict[str, tuple[LoraLayer, torch.Tensor]] = {}
        if not isinstance(policy, PeftModel):
            self.model = policy
            return
        base = policy.get_base_model()
        layers = {n: m for n, m in base.named_modules() if isinstance(m, LoraLayer)}
        for name, layer in layers.items():
            if any(layer.use_dora.get(a, False) for a in layer.active_adapters):
                raise UserError(f"fast GRPO rollouts cannot merge the DoRA adapter on {name}")
        state: dict[str, torch.Tensor] = {}
        for key, tensor in base.state_dict().items():
            if ".lora_" not in key:
                state[key.replace(".base_layer.", ".")] = tensor
        for name, layer in layers.items():
            merged = torch.empty_like(layer.get_base_layer().weight)
            state[f"{name}.weight"] = merged
            self._merged[name] = (layer, merged)
        self.model = _assemble(base, state)
        self.sync()

    @torch.no_grad()
    def sync(self) -> None:
        """Set every merged weight to base + the active adapters' deltas (summed in fp32)."""
        for layer, merged in self._merged.values():
            total = layer.get_base_layer().weight.float()
            for adapter in layer.active_adapters:
                if adapter in layer.lora_A:
                    total = total + layer.get_delta_weight(adapter).float()
            merged.copy_(total)

    @contextmanager
    def generating(self) -> Iterator[PreTrainedModel]:
        """The twin in eval mode (dropout off, cache allowed), its previous mode restored after."""
        was_training = self.model.training
        self.model.eval()
        try:
            yield self.model
        finally:
            self.model.train(was_training)


def _assemble(base: PreTrainedModel, state: dict[str, torch.Tensor]) -> PreTrainedModel:
    """A new model of `base`'s architecture whose parameters are exactly the `state` tensors.

    Built on the meta device (no allocation) and filled with `assign=True`, so shared tensors
    stay shared. Non-persistent buffers (rotary frequencies) are not in a state dict: they are
    taken from `base`, which has the same module tree outside the LoRA layers.
    """
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        twin = AutoModelForCausalLM.from_config(base.config, dtype=base.dtype)
    twin.load_state_dict(state, strict=True, assign=True)
    for name, buffer in list(twin.named_buffers()):
        if buffer.is_meta:
            module_name, _, buffer_name = name.rpartition(".")
            module = twin.get_submodule(module_name)
            module.register_buffer(buffer_name, base.get_buffer(name), persistent=False)
    twin.requires_grad_(False)
    twin.generation_config = base.generation_config
    return twin


class FastRollout:
    """TRL `rollout_func`: one batched static-cache generation per generation batch."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, *, compile: bool = False):
        self.tokenizer = tokenizer
        self.compile = compile
        self._twin: GenerationTwin | None = None
        self._decoder: StaticDecoder | None = None
        self._synced_step = -1

    def __call__(self, prompts: list[Any], trainer: GRPOTrainer) -> dict[str, Any]:
        """Completions for `prompts` (strings or chat messages), in TRL's rollout format."""
        args = trainer.args
        if args.repetition_penalty != 1.0 or args.min_p is not None:
            raise UserError("fast GRPO rollouts support temperature, top_k and top_p only")
        prompt_ids = self._encode(prompts, getattr(args, "chat_template_kwargs", None) or {})
        if self._twin is None:
            self._twin = GenerationTwin(trainer.accelerator.unwrap_model(trainer.model))
            self._decoder = StaticDecoder(self._twin.model, compile=self.compile)
            self._synced_step = trainer.state.global_step
        elif trainer.state.global_step != self._synced_step:
            self._twin.sync()
            self._synced_step = trainer.state.global_step
        assert self._decoder is not None
        sampling = Sampling(args.temperature, args.top_p, args.top_k or 0)
        with self._twin.generating():
            completions = self._decoder.generate(
                prompt_ids,
                args.max_completion_length,
                sampling,
                list(trainer.eos_token_ids),
                self.tokenizer.pad_token_id,
            )
        return {"prompt_ids": prompt_ids, "completion_ids": completions, "logprobs": None}

    def _encode(self, prompts: list[Any], template_kwargs: dict[str, Any]) -> list[list[int]]:
        """Prompt token ids exactly as TRL's own rollout tokenizes them."""
        if prompts and isinstance(prompts[0], list):
            rendered = self.tokenizer.apply_chat_template(
                prompts, add_generation_prompt=True, tokenize=False, **template_kwargs
            )
            return self.tokenizer(rendered, add_special_tokens=False)["input_ids"]
        return self.tokenizer(prompts)["input_ids"]
