"""What `qmd-ft bench --backend mlx` measures, and the upstream recipe beside it on the CPU.

"Ours" runs through the code `qmd-ft train --backend mlx` and the mlx eval generator run: `sft`
(mlx-lm's tuner with our completion loss) and `grpo` (our loop) on a prepared-data directory
with the cuda bench's run configs (`qmd_ft.bench.recipes`: QMD's recipes), and
`generate_batch` (mlx-lm's KV-cached `BatchGenerator`) at `gen_batch`, sampled without stop ids
so every row is full. Model configs, tokenizer, synthetic rows and result arithmetic are
`qmd_ft.bench`'s, shared with the cuda bench; the random weights are drawn by mlx (the same
N(0, 0.02) init with norms at one, not torch's random stream), in bf16 on a GPU (as Qwen3-1.7B
ships, and as the cuda bench stores them there) and fp32 on the CPU.

The trainers take no callbacks, and the bench must measure them as `train` runs them, so it
listens from outside for the duration of a run (`patched`, undone afterwards):

- SFT: around mlx-lm's `tuner.trainer.train`, the very call `sft` makes, the training batches
  are counted (real tokens: each row's prompt + completion length, what TRL's `num_tokens`
  counts on the cuda side) and the tuner's per-step loss reports are timed. With the run
  config's `logging_steps: 1` the tuner reports after every optimizer step (mx.eval has run,
  so the work is done); a step's time runs from its first batch request to its report.
- GRPO: a step runs from its `sample` call (rollouts) to the return of its `train_step`, whose
  mx.eval waits for the update; logging and the final checkpoint are left out, as the cuda
  bench's Trainer callback leaves them out.

The first `warmup` steps (mlx-lm compiles the SFT step on its first call) are left out of
the steady numbers; generation runs twice and times the second call.

`--upstream-recipe`: the upstream recipe is torch + TRL, so it runs with the cuda backend's
upstream functions on this same checkpoint and data, on the CPU. That compares like with like
only when ours runs on the CPU too (mlx[cpu] on Linux, or `--device cpu`); beside mlx on a GPU
(Metal) the ratio would set a GPU against a CPU, so that combination is refused.
"""

from __future__ import annotations

import inspect
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx_lm.tuner.callbacks import TrainingCallback

from qmd_ft.backend import TrainRequest, get_backend
from qmd_ft.bench.plan import BenchPlan
from qmd_ft.bench.recipes import grpo_config, sft_config
from qmd_ft.bench.results import gen_result, grpo_result, sft_result
from qmd_ft.bench.workload import model_configs, prompts, write_data
from qmd_ft.errors import UserError


def measure(plan: BenchPlan) -> dict[str, Any]:
    """Build the model and data, run the planned parts for ours (and upstream); the result."""
    if plan.speed:
        raise UserError("--speed: the mlx backend has no speed switches (they are cuda's)")
    import mlx_lm
    import transformers

    from qmd_ft.backends.mlx.models import use_device

    use_device(plan.device)
    on_gpu = mx.default_device() == mx.gpu
    if plan.upstream and on_gpu:
        raise UserError(
            "--upstream-recipe with --backend mlx runs the torch/TRL recipe on the CPU, so ours "
            "must run there too (a Metal-vs-CPU ratio would mislead): add --device cpu"
        )
    if plan.upstream:
        get_backend("cuda")  # torch, TRL, PEFT: a one-line error when missing
    dtype = mx.bfloat16 if on_gpu else mx.float32
    with tempfile.TemporaryDirectory(prefix="qmd-bench-mlx-") as tmp:
        root = Path(tmp)
        model_dir, params = build_model(root / "model", plan.shape, plan.seed, dtype)
        data_dir = write_data(root / "data", plan)
        setup: dict[str, Any] = {
            "device": device_name(on_gpu),
            "shape": plan.shape,
            "params": params,
            "mlx": mx.__version__,
            "mlx_lm": mlx_lm.__version__,
            "transformers": transformers.__version__,
            **plan.lengths(),
        }
        result: dict[str, Any] = {
            "setup": setup,
            # mlx has none of cuda's speed switches; what sets its speed is the weights' dtype.
            "ours_speed": {"dtype": "bfloat16" if on_gpu else "float32"},
            "ours": {},
        }
        upstream_parts = _upstream_parts(setup) if plan.upstream else {}
        ours, upstream = result["ours"], {}
        for part in ("sft", "grpo", "gen"):
            if part not in plan.parts:
                continue
            out = root / part
            if part == "sft":
                ours.update(sft_ours(model_dir, data_dir, out, plan))
            elif part == "grpo":
                ours.update(grpo_ours(model_dir, data_dir, out, plan))
            else:
                ours.update(gen_ours(model_dir, data_dir, plan))
            if part in upstream_parts:
                measure_upstream = upstream_parts[part]
                upstream.update(measure_upstream(model_dir, data_dir, root / f"{part}-up", plan))
        if plan.upstream:
            result["upstream"] = upstream
    return result


def device_name(on_gpu: bool) -> str:
    """`gpu (Apple M2 Max)` or `cpu (AMD EPYC)`: mlx's device kind and what it reports."""
    try:
        name = mx.device_info().get("device_name", "")
    except Exception:  # device_info is young API; the kind alone still says enough
        name = ""
    kind = "gpu" if on_gpu else "cpu"
    return f"{kind} ({name})" if name else kind


def build_model(out: Path, shape: str, seed: int, dtype: mx.Dtype) -> tuple[Path, int]:
    """A random-init Qwen3 checkpoint of `shape` with its tokenizer in `out`; its size.

    The config, generation config and tokenizer files are the cuda bench's (`model_configs`);
    mlx-lm builds the model from that config.json (lazily: no default init is computed) so the
    weight names are the ones its loader expects, which are HF's, and transformers loads the
    file too (the upstream recipe beside ours). Weights: N(0, 0.02), norms at one, as
    transformers initializes Qwen3.
    """
    from mlx.utils import tree_flatten
    from mlx_lm.utils import load_model

    config, generation, tokenizer = model_configs(shape)
    config.architectures = ["Qwen3ForCausalLM"]
    config.dtype = "bfloat16" if dtype == mx.bfloat16 else "float32"
    config.save_pretrained(str(out))
    generation.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    model, _ = load_model(out, lazy=True, strict=False)
    mx.random.seed(seed)
    weights = {
        name: mx.ones(value.shape, dtype)
        if name.endswith("norm.weight")
        else mx.random.normal(value.shape, dtype, scale=0.02)
        for name, value in tree_flatten(model.parameters())
    }
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "pt"})
    return out, sum(w.size for w in weights.values())


# ------------------------------------------------------------------------------ listening


@contextmanager
def patched(owner: Any, name: str, wrap: Callable[[Any], Any]) -> Iterator[None]:
    """`owner.name` replaced by `wrap(owner.name)` inside the block, restored after it."""
    original = getattr(owner, name)
    setattr(owner, name, wrap(original))
    try:
        yield
    finally:
        setattr(owner, name, original)


class SftProbe:
    """Step times, real tokens and losses of the mlx-lm tuner run that `sft` starts.

    `wrap` turns mlx-lm's `train` into one that hands the tuner the same arguments, but with
    its training batches counted and its loss reports timed.
    """

    def __init__(self) -> None:
        self.times: list[float] = []
        self.tokens: list[float] = []
        self.losses: list[float] = []
        self._start = 0.0
        self._pending = 0

    def wrap(self, train: Callable[..., Any]) -> Callable[..., Any]:
        """`train` with `iterate_batches` and `training_callback` listened to."""
        signature = inspect.signature(train)

        def probed(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            bound.arguments["iterate_batches"] = self._counted(bound.arguments["iterate_batches"])
            bound.arguments["training_callback"] = _Reports(
                self, bound.arguments["training_callback"]
            )
            return train(*bound.args, **bound.kwargs)

        return probed

    def _counted(self, iterate: Callable[..., Any]) -> Callable[..., Any]:
        """`iterate` whose training (looping) batches add their real tokens to the step."""
        signature = inspect.signature(iterate)

        def counting(*args: Any, **kwargs: Any) -> Any:
            batches = iterate(*args, **kwargs)
            if not signature.bind(*args, **kwargs).arguments.get("loop", False):
                return batches  # evaluation batches are not training steps

            def tally() -> Iterator[Any]:
                self._start = time.perf_counter()  # step 1 starts at its first batch request
                for batch, lengths in batches:
                    self._pending += int(lengths[:, 1].sum().item())
                    yield batch, lengths

            return tally()

        return counting

    def report(self, train_info: dict[str, Any]) -> None:
        """One optimizer step ended (its tokens were all requested, its update evaluated)."""
        self.times.append(time.perf_counter() - self._start)
        self.tokens.append(float(self._pending))
        self.losses.append(float(train_info["train_loss"]))
        self._pending = 0

    def restart(self) -> None:
        """The next step starts now (after the trainer's own logging of this one)."""
        self._start = time.perf_counter()


class _Reports(TrainingCallback):
    """The tuner's callback as `sft` made it, with each loss report timed around it."""

    def __init__(self, probe: SftProbe, inner: TrainingCallback | None):
        self.probe, self.inner = probe, inner

    def on_train_loss_report(self, train_info: dict[str, Any]) -> None:
        """Time the step, then let `sft`'s reporter log (and checkpoint) outside of it."""
        self.probe.report(train_info)
        if self.inner is not None:
            self.inner.on_train_loss_report(train_info)
        self.probe.restart()

    def on_val_loss_report(self, val_info: dict[str, Any]) -> None:
        """Pass val reports through (the bench data has no val rows)."""
        if self.inner is not None:
            self.inner.on_val_loss_report(val_info)


class GrpoClock:
    """Wall time of each GRPO step: from its rollouts' `sample` call to its `train_step`'s end."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []

    def start(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """`fn` (the loop's `sample`) marking a step's start."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            self.starts.append(time.perf_counter())
            return fn(*args, **kwargs)

        return timed

    def end(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """`fn` (the loop's `train_step`) marking a step's end when it returns."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            out = fn(*args, **kwargs)
            self.ends.append(time.perf_counter())
            return out

        return timed

    @property
    def times(self) -> list[float]:
        """Seconds per step (one rollout round per step: num_iterations is 1)."""
        return [b - a for a, b in zip(self.starts, self.ends, strict=True)]


# ------------------------------------------------------------------------------ ours


def sft_ours(model_dir: Path, data_dir: Path, out: Path, plan: BenchPlan) -> dict[str, Any]:
    """SFT through the mlx backend's `sft` with configs/sft.yaml's recipe."""
    import mlx_lm.tuner.trainer as tuner

    from qmd_ft.backends.mlx.sft import sft

    steps = plan.warmup + plan.sft_steps
    cfg = sft_config(model_dir, data_dir, out)
    req = TrainRequest(cfg, data_dir, out, device=plan.device, max_steps=steps)
    probe = SftProbe()
    with patched(tuner, "train", probe.wrap):
        sft(req)
    if len(probe.times) != steps:
        raise RuntimeError(f"mlx SFT bench: {len(probe.times)} step reports for {steps} steps")
    return {
        **sft_result(probe.times, probe.tokens, plan.warmup),
        "sft_loss_per_step": [round(x, 4) for x in probe.losses],
    }


def grpo_ours(model_dir: Path, data_dir: Path, out: Path, plan: BenchPlan) -> dict[str, Any]:
    """GRPO through the mlx backend's loop: configs/grpo.yaml's recipe, one micro-batch."""
    import qmd_ft.backends.mlx.grpo as loop

    steps = plan.warmup + plan.grpo_steps
    cfg = grpo_config(model_dir, data_dir, out, plan)
    clock = GrpoClock()
    with patched(loop, "sample", clock.start), patched(loop, "train_step", clock.end):
        loop.grpo(TrainRequest(cfg, data_dir, out, device=plan.device, max_steps=steps))
    if len(clock.ends) != steps:
        raise RuntimeError(f"mlx GRPO bench: {len(clock.ends)} timed steps for {steps} steps")
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return grpo_result(clock.times, history, plan.warmup)


def gen_ours(model_dir: Path, data_dir: Path, plan: BenchPlan) -> dict[str, Any]:
    """The eval generator's `generate_batch` at `gen_batch`: sampled, no stop ids, full rows."""
    from qmd_ft.backends.mlx.generate import generate_batch, make_sampler
    from qmd_ft.backends.mlx.models import load_stack

    model, tokenizer, _ = load_stack(str(model_dir))
    model.eval()
    ids = [tokenizer.encode(p) for p in prompts(data_dir, plan.gen_batch)]
    sampler = make_sampler(1.0, 1.0)
    mx.random.seed(plan.seed)
    timings, samples = [], []
    for _ in range(2):
        start = time.perf_counter()
        samples = generate_batch(model, ids, plan.gen_tokens, sampler, set(), plan.gen_batch)
        timings.append(time.perf_counter() - start)
    return gen_result(sum(len(s.tokens) for s in samples), timings)


# ------------------------------------------------------------------------------ upstream


def _upstream_parts(setup: dict[str, Any]) -> dict[str, Callable[..., dict[str, Any]]]:
    """The cuda backend's upstream-recipe measurements, bound to the CPU; notes their setup."""
    import torch
    import trl

    from qmd_ft.backends.cuda import bench as cuda

    setup.update(torch=torch.__version__, trl=trl.__version__, upstream_device="cpu (torch)")
    return {
        "sft": lambda m, d, o, p: cuda.sft_upstream(m, d, o, p, "cpu"),
        "grpo": lambda m, d, o, p: cuda.grpo_upstream(m, d, o, p, "cpu"),
        "gen": lambda m, d, o, p: cuda.gen_upstream(m, d, p, "cpu"),
    }
