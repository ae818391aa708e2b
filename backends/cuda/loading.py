"""Devices, dtypes, models, tokenizers and adapters: everything the stages load, in one place.

Loading failures become one-line `UserError`s here, so a missing model or a CUDA request on a
CPU-only machine stops a run before any data is tokenized or any step is taken.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from qmd_ft.backends.precision import UpdateSize
from qmd_ft.config import LoraConfig
from qmd_ft.errors import UserError
from qmd_ft.model_ref import is_local_ref
from qmd_ft.prompt import IM_END

if TYPE_CHECKING:
    import peft
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

ADAPTER_CONFIG = "adapter_config.json"


def resolve_device(device: str | None) -> str:
    """`cpu` or `cuda`; None picks cuda when a CUDA device is visible, else cpu.

    On cuda the process's own GPU is made current first (`LOCAL_RANK` under `--gpus N`), before
    anything touches CUDA: otherwise the first call that does (a bf16 check, a memory query)
    would open a context on GPU 0 in every process, costing GPU 0 memory N times over.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise UserError(f"--device {device}: choose cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"--device cuda: no CUDA device visible (torch {torch.__version__}); use --device cpu"
        )
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    return device


def use_bf16(device: str) -> bool:
    """bf16 compute on GPUs that support it; CPUs (tests, laptops) stay in fp32 for exactness."""
    return device == "cuda" and torch.cuda.is_bf16_supported()


def generation_dtype(ref: str | Path, adapters: list[str], device: str) -> torch.dtype:
    """The dtype eval generates in: the weights as stored, so what a merge kept is evaluated.

    CPUs stay in fp32. On a GPU a bf16 checkpoint runs in bf16, while an fp32 one (a release
    merged in fp32 because bf16 would round GRPO's update away, see `merge`) runs in fp32, and
    so does a base with adapters merged on load: rounding it to bf16 would erase the same
    update the gate is asked to judge.
    """
    if not use_bf16(device) or adapters:
        return torch.float32
    from transformers import AutoConfig

    stored = AutoConfig.from_pretrained(check_model_ref(ref)).dtype
    return torch.float32 if stored == torch.float32 else torch.bfloat16


def is_adapter(path: str | Path) -> bool:
    """True for a PEFT adapter directory (as opposed to a full model dir or a hub id)."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def require_dir(path: str | Path, what: str, hint: str) -> Path:
    """A local artifact that must exist (an SFT result, an adapter): a clear error if not."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{what} {p}: a file, not a directory")
    if not p.is_dir():
        raise UserError(f"{what} {p}: not found; {hint}")
    if not (p / "config.json").is_file() and not is_adapter(p):
        raise UserError(f"{what} {p}: not a model directory (no config.json or {ADAPTER_CONFIG})")
    return p


def check_model_ref(ref: str | Path, what: str = "model") -> str:
    """The ref to load: a local one must be a model directory (one-line error if not).

    Every load goes through here (train's `model.base` preflight, merge, eval), so a bad path
    reads the same everywhere and fails before any work. `~` is expanded: transformers won't.
    """
    if not is_local_ref(ref):
        return str(ref)
    return str(require_dir(Path(ref).expanduser(), what, "check the path"))


def load_tokenizer(ref: str | Path, padding_side: str = "right") -> PreTrainedTokenizerBase:
    """The model's tokenizer with a pad token (Qwen3 ships `<|endoftext|>`; others may not)."""
    from transformers import AutoTokenizer

    ref = check_model_ref(ref)
    try:
        tokenizer = AutoTokenizer.from_pretrained(ref, padding_side=padding_side)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load tokenizer {ref}: {_first_line(e)}") from e
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    ref: str | Path, dtype: torch.dtype, attn_implementation: str | None = None
) -> PreTrainedModel:
    """A causal LM from a local dir or hub id, in `dtype`, on the CPU (trainers move it).

    `attn_implementation` None keeps transformers' default (sdpa); the speed paths pass
    `flash_attention_2` when padding-free batches can use its varlen kernels.
    """
    from transformers import AutoModelForCausalLM

    ref = check_model_ref(ref)
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        return AutoModelForCausalLM.from_pretrained(ref, dtype=dtype, **extra)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load model {ref}: {_first_line(e)}") from e


def dtype_name(dtype: torch.dtype | None) -> str:
    """`bfloat16`, `float16`, `float32` (None, as configs without a dtype say: float32)."""
    return str(dtype or torch.float32).removeprefix("torch.")


def lora_update(model: torch.nn.Module, name: str, storage: str) -> UpdateSize:
    """The size of the active LoRA adapters of a PEFT `model` over its base weights."""
    from peft.tuners.lora import LoraLayer

    size = UpdateSize(name, storage)
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, LoraLayer):
                continue
            weight = module.get_base_layer().weight.float().cpu().numpy()
            for adapter in module.active_adapters:
                if adapter in module.lora_A:
                    delta = module.get_delta_weight(adapter).float().cpu().numpy()
                    size.add(weight, delta)
    return size


def merge_adapters(
    model: PreTrainedModel,
    adapters: list[str],
    sizes: list[UpdateSize] | None = None,
    stored: str = "float32",
) -> PreTrainedModel:
    """Fold each PEFT adapter into the weights in order (SFT, then GRPO on top of it).

    With a `sizes` list, each adapter's update is measured against the weights it lands on,
    in steps of the `stored` dtype (`precision.lora_update`), and appended to it.
    """
    from peft import PeftModel

    for adapter in adapters:
        require_dir(adapter, "adapter", "check the path")
        if not is_adapter(adapter):
            raise UserError(f"adapter {adapter}: no {ADAPTER_CONFIG} (is it a full model dir?)")
        peft_model = PeftModel.from_pretrained(model, adapter)
        if sizes is not None:
            sizes.append(lora_update(peft_model, str(adapter), stored))
        model = peft_model.merge_and_unload()
    return model


def load_merged(
    base: str,
    adapters: list[str],
    dtype: torch.dtype,
    attn_implementation: str | None = None,
) -> PreTrainedModel:
    """Base weights with the adapters merged in, as one plain transformers model in `dtype`.

    Merging happens in fp32 and the sum is rounded once: adding a LoRA delta to bf16 weights
    computes and rounds it against weights a thousand times larger, losing much of it.
    """
    model = load_model(base, torch.float32 if adapters else dtype, attn_implementation)
    return merge_adapters(model, adapters).to(dtype)


def peft_lora(lora: LoraConfig) -> peft.LoraConfig:
    """The config's LoRA section as a PEFT LoraConfig (causal LM, no bias training)."""
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def stop_token_ids(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> list[int]:
    """Ids that end a completion: `<|im_end|>` first, then whatever the model declares."""
    ids = [tokenizer.convert_tokens_to_ids(IM_END), tokenizer.eos_token_id]
    declared = model.generation_config.eos_token_id
    ids += declared if isinstance(declared, list) else [declared]
    unk = tokenizer.unk_token_id
    return list(dict.fromkeys(i for i in ids if i is not None and i != unk))


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]
