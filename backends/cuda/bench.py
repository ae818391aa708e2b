"""What `qmd-ft bench` measures on the cuda backend, and the upstream recipe beside it.

"Ours" runs through the code `qmd-ft train` and `qmd-ft eval` run: `run_sft`/`run_grpo` on a
prepared-data directory with a config (QMD's configs/sft.yaml and configs/grpo.yaml recipes) and
the fast switches of `SpeedOptions.fast`, and the eval generator's `StaticDecoder` on a model
loaded as `make_generator` loads it. "Upstream" is QMD's original recipe as
../shared/bench/upstream_recipe_anchor.py runs it: TRL's defaults (gradient checkpointing on,
conversational data tokenized by TRL, HF `generate` with a dynamic cache), batch 4 x 4 for SFT,
2 x 8 for GRPO.

Both start from one random-init checkpoint of the chosen shape, written to disk once with a
word-level tokenizer of the shape's vocabulary size (no download), and the same synthetic rows;
the configs, tokenizer, data, run configs and result arithmetic are `qmd_ft.bench`'s role modules,
shared with the mlx backend's bench. `BACKEND.bench` is `measure`.
Step times come from a Trainer callback that synchronizes the GPU at each step's ends; the
first `warmup` steps (allocator growth, compilation) are left out of the steady numbers.
"""

from __future__ import annotations

import gc
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from qmd_ft.backend import TrainRequest
from qmd_ft.backends.cuda.fastgen import Sampling, StaticDecoder
from qmd_ft.backends.cuda.loading import load_merged, load_tokenizer, resolve_device, use_bf16
from qmd_ft.backends.cuda.speed import SpeedOptions
from qmd_ft.bench.plan import BenchPlan
from qmd_ft.bench.recipes import grpo_config, sft_config
from qmd_ft.bench.results import gen_result, grpo_result, sft_result
from qmd_ft.bench.workload import model_configs, prompts, write_data
from qmd_ft.data.prepare import TRAIN_FILE

UPSTREAM_SFT_LORA: dict[str, Any] = {
    "r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.0,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
"""The anchor script's SFT adapter (PEFT keywords)."""

UPSTREAM_GRPO_LORA: dict[str, Any] = {
    "r": 4,
    "lora_alpha": 8,
    "lora_dropout": 0.05,
    "target_modules": ["q_proj", "v_proj"],
}
"""The anchor script's GRPO adapter (PEFT keywords)."""


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step, the GPU synchronized at both ends."""

    def __init__(self, device: str):
        self.device = device
        self.times: list[float] = []
        self._start = 0.0

    def _sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Start the clock once the previous step's GPU work is done."""
        self._sync()
        self._start = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Stop it once this step's GPU work is done."""
        self._sync()
        self.times.append(time.perf_counter() - self._start)


def measure(plan: BenchPlan) -> dict[str, Any]:
    """Build the model and data, run the planned parts for ours (and upstream); the result."""
    import transformers
    import trl

    device = resolve_device(plan.device)
    speed = SpeedOptions.fast(device).with_overrides(plan.speed)
    with tempfile.TemporaryDirectory(prefix="qmd-bench-") as tmp:
        root = Path(tmp)
        model_dir, params = build_model(root / "model", plan.shape, device, plan.seed)
        data_dir = write_data(root / "data", plan)
        result: dict[str, Any] = {
            "setup": {
                "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                "shape": plan.shape,
                "params": params,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "trl": trl.__version__,
                **plan.lengths(),
            },
            "ours_speed": asdict(speed),
            "ours": {},
        }
        ours, upstream = result["ours"], {}
        if "sft" in plan.parts:
            ours.update(sft_ours(model_dir, data_dir, root / "sft", plan, speed, device))
            if plan.upstream:
                upstream.update(sft_upstream(model_dir, data_dir, root / "sft-up", plan, device))
        if "grpo" in plan.parts:
            ours.update(grpo_ours(model_dir, data_dir, root / "grpo", plan, speed, device))
            if plan.upstream:
                upstream.update(grpo_upstream(model_dir, data_dir, root / "grpo-up", plan, device))
        if "gen" in plan.parts:
            ours.update(gen_ours(model_dir, data_dir, plan, speed, device))
            if plan.upstream:
                upstream.update(gen_upstream(model_dir, data_dir, plan, device))
        if plan.upstream:
            result["upstream"] = upstream
    return result


def build_model(out: Path, shape: str, device: str, seed: int) -> tuple[Path, int]:
    """A random-init Qwen3 checkpoint of `shape` with its tokenizer in `out`; its size.

    Initialized on the device that will train it (seconds on a GPU for 1.7B parameters) with
    transformers' own init, stored in bf16 on GPUs (as Qwen3-1.7B ships) and fp32 on CPUs.
    """
    from transformers import Qwen3ForCausalLM

    config, generation, tokenizer = model_configs(shape)
    dtype = torch.bfloat16 if use_bf16(device) else torch.float32
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen3ForCausalLM(config).to(dtype)
    model.generation_config = generation
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    del model
    _free(device)
    return out, params


def sft_tokens(log_history: list[dict[str, Any]]) -> list[float]:
    """Real tokens of each optimizer step, from TRL's cumulative `num_tokens` log.

    TRL counts the attention mask (padded batches) or the flattened length (padding-free), i.e.
    the non-pad tokens either way.
    """
    totals = [float(e["num_tokens"]) for e in log_history if "num_tokens" in e and "loss" in e]
    return [b - a for a, b in zip([0.0, *totals[:-1]], totals, strict=True)]


def sft_ours(
    model_dir: Path, data_dir: Path, out: Path, plan: BenchPlan, speed: SpeedOptions, device: str
) -> dict[str, Any]:
    """SFT through `run_sft` with configs/sft.yaml's recipe and the fast switches."""
    from qmd_ft.backends.cuda.sft import run_sft

    cfg = sft_config(model_dir, data_dir, out)
    timer = StepTimer(device)
    req = TrainRequest(cfg, data_dir, out, device=device, max_steps=plan.warmup + plan.sft_steps)
    run_sft(req, speed=speed, callbacks=[timer])
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    _free(device)
    return sft_result(timer.times, sft_tokens(history), plan.warmup)


def grpo_ours(
    model_dir: Path, data_dir: Path, out: Path, plan: BenchPlan, speed: SpeedOptions, device: str
) -> dict[str, Any]:
    """GRPO through `run_grpo`: configs/grpo.yaml's recipe, all completions in one micro-batch."""
    from qmd_ft.backends.cuda.grpo import run_grpo

    cfg = grpo_config(model_dir, data_dir, out, plan)
    timer = StepTimer(device)
    steps = plan.warmup + plan.grpo_steps
    run_grpo(TrainRequest(cfg, data_dir, out, device=device, max_steps=steps), speed, [timer])
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    _free(device)
    return grpo_result(timer.times, history, plan.warmup)


def gen_ours(
    model_dir: Path, data_dir: Path, plan: BenchPlan, speed: SpeedOptions, device: str
) -> dict[str, Any]:
    """Eval generation's fast path at `gen_batch`: sampled, no stop ids, so every row is full.

    The first call (which compiles, when `compile_generation` is on) is timed apart.
    """
    tokenizer = load_tokenizer(model_dir, padding_side="left")
    dtype = torch.bfloat16 if use_bf16(device) else torch.float32
    model = load_merged(str(model_dir), [], dtype).to(device).eval()
    decoder = StaticDecoder(model, compile=speed.compile_generation and speed.fast_generation)
    ids = [tokenizer(p)["input_ids"] for p in prompts(data_dir, plan.gen_batch)]
    sampling = Sampling(temperature=1.0)
    timings = []
    for _ in range(2):
        _sync(device)
        start = time.perf_counter()
        rows = decoder.generate(ids, plan.gen_tokens, sampling, [], tokenizer.pad_token_id)
        _sync(device)
        timings.append(time.perf_counter() - start)
    made = sum(len(r) for r in rows)
    del model, decoder
    _free(device)
    return gen_result(made, timings)


def sft_upstream(
    model_dir: Path, data_dir: Path, out: Path, plan: BenchPlan, device: str
) -> dict[str, Any]:
    """The upstream SFT recipe, as the anchor script runs it (TRL defaults, batch 4 x 4)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    rows = [json.loads(line) for line in (data_dir / TRAIN_FILE).read_text().splitlines()]
    dataset = Dataset.from_list(
        [{"prompt": r["messages"][:1], "completion": r["messages"][1:]} for r in rows[:2000]]
    )
    dtype = torch.bfloat16 if use_bf16(device) else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype)
    timer = StepTimer(device)
    args = SFTConfig(
        output_dir=str(out),
        max_steps=plan.warmup + plan.sft_steps,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=4,
        learning_rate=2e-4,
        lr_scheduler_type="cosine",
        max_length=512,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=use_bf16(device),
        use_cpu=device == "cpu",
    )
    lora = LoraConfig(task_type="CAUSAL_LM", **UPSTREAM_SFT_LORA)
    tokenizer = load_tokenizer(model_dir)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[timer],
    )
    trainer.train()
    history = trainer.state.log_history
    del trainer, model
    _free(device)
    return sft_result(timer.times, sft_tokens(history), plan.warmup)


def grpo_upstream(
    model_dir: Path, data_dir: Path, out: Path, plan: BenchPlan, device: str
) -> dict[str, Any]:
    """The upstream GRPO recipe (batch 2 x 8, 4 generations, LoRA r4 on q/v, HF generate)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from qmd_ft.reward import qmd_reward

    rows = [json.loads(line) for line in (data_dir / TRAIN_FILE).read_text().splitlines()]
    dataset = Dataset.from_list([{"prompt": r["messages"][:1]} for r in rows[:512]])
    dtype = torch.bfloat16 if use_bf16(device) else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype)
    timer = StepTimer(device)
    micro = 2
    args = GRPOConfig(
        output_dir=str(out),
        max_steps=plan.warmup + plan.grpo_steps,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=plan.completions_per_step // micro,
        num_generations=plan.num_generations,
        max_completion_length=plan.gen_tokens,
        beta=0.04,
        learning_rate=5e-7,
        max_grad_norm=0.5,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=use_bf16(device),
        use_cpu=device == "cpu",
    )
    lora = LoraConfig(task_type="CAUSAL_LM", **UPSTREAM_GRPO_LORA)
    tokenizer = load_tokenizer(model_dir, padding_side="left")
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[qmd_reward],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[timer],
    )
    trainer.train()
    history = trainer.state.log_history
    del trainer, model
    _free(device)
    return grpo_result(timer.times, history, plan.warmup)


def gen_upstream(model_dir: Path, data_dir: Path, plan: BenchPlan, device: str) -> dict[str, Any]:
    """HF `generate` as the upstream recipe calls it: dynamic cache, sampled, full length."""
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(model_dir, padding_side="left")
    dtype = torch.bfloat16 if use_bf16(device) else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype).to(device).eval()
    batch = tokenizer(prompts(data_dir, plan.gen_batch), return_tensors="pt", padding=True)
    batch = batch.to(device)
    n = plan.gen_tokens
    timings = []
    with torch.inference_mode():
        for tokens in (min(8, n), n):
            _sync(device)
            start = time.perf_counter()
            model.generate(**batch, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=True)
            _sync(device)
            timings.append(time.perf_counter() - start)
    del model
    _free(device)
    return {"gen_tokens_per_s": round(plan.gen_batch * n / timings[1], 1)}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _free(device: str) -> None:
    """Release what the last measurement held, so the next one starts from an empty GPU."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
