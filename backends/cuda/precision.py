"""How much of an adapter's update survives storing the merged weights in a given dtype.

GRPO at QMD's settings (lr 5e-7, 200 steps, LoRA r4) moves each weight by a few percent of a
bf16 rounding step. Rounding the merged weights to bf16 then puts almost every weight back on
the value it had: the release would be the SFT model with a new name. So every merge measures,
per adapter, the update against the storage dtype's resolution (its unit in the last place at
each weight), and how much of it the dtype keeps:

    kept(dtype) = <round(W + D) - round(W), D> / <D, D>

the share of the update D that the rounded weights still move along D (rounding noise that is
not along D is left out: it is not the update, and it averages away). 1.0 keeps all of it, 0
loses it; what a GGUF file keeps is the same number for its type (f16 here; the quantized
types keep less than f16).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

KEEP_THRESHOLD = 0.9
"""Below this share of an update kept, a dtype is not good enough to store the release in."""

MEASURED = (torch.bfloat16, torch.float16, torch.float32)
"""The dtypes a release or its GGUF can hold weights in."""


def dtype_name(dtype: torch.dtype) -> str:
    """`bfloat16`, `float16`, `float32`: how manifests and log lines name a dtype."""
    return str(dtype).removeprefix("torch.")


def ulp(weights: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The spacing of `dtype`'s values at each weight (fp32): its rounding step there."""
    info = torch.finfo(dtype)
    # |w| = m * 2**e with m in [0.5, 1): the spacing there is 2**(e - 1 - mantissa digits).
    _, exponent = torch.frexp(weights.float().abs().clamp(min=info.tiny))
    digits = {torch.bfloat16: 7, torch.float16: 10, torch.float32: 23}[dtype]
    return torch.ldexp(torch.ones_like(weights, dtype=torch.float32), exponent - 1 - digits)


@dataclass
class UpdateSize:
    """What one adapter changes, summed over the weights it touches."""

    name: str
    count: int = 0
    delta_sq: float = 0.0
    ulp_sq: float = 0.0
    """Sum of the squared rounding steps of the storage dtype at each weight."""
    along: dict[torch.dtype, float] = field(default_factory=dict)
    """Per dtype: sum of (round(W + D) - round(W)) * D."""

    def add(self, weight: torch.Tensor, delta: torch.Tensor, storage: torch.dtype) -> None:
        """Account for one weight matrix `weight` (before the update) and its `delta`."""
        w, d = weight.detach().float(), delta.detach().float()
        self.count += d.numel()
        self.delta_sq += float((d * d).sum())
        self.ulp_sq += float((ulp(w, storage) ** 2).sum())
        for dtype in MEASURED:
            moved = (w + d).to(dtype).float() - w.to(dtype).float()
            self.along[dtype] = self.along.get(dtype, 0.0) + float((moved * d).sum())

    def kept(self, dtype: torch.dtype) -> float:
        """Share of the update `dtype` keeps (1.0 for an update of zero: nothing to lose)."""
        return self.along.get(dtype, 0.0) / self.delta_sq if self.delta_sq > 0 else 1.0

    @property
    def rms_steps(self) -> float:
        """The update's rms over the rounding step's rms (storage dtype), over all weights.

        A ratio of norms rather than a mean of per-weight ratios, which the few weights near
        zero (whose rounding step is tiny) would dominate.
        """
        return (self.delta_sq / self.ulp_sq) ** 0.5 if self.ulp_sq else 0.0

    def summary(self, storage: torch.dtype) -> dict[str, float]:
        """The numbers a manifest records: size in storage steps, share kept per dtype."""
        return {
            f"rms_{dtype_name(storage)}_steps": round(self.rms_steps, 6),
            **{f"kept_{dtype_name(t)}": round(self.kept(t), 4) for t in MEASURED},
        }

    def line(self, storage: torch.dtype) -> str:
        """One log line: the update's size and what bf16, f16 and fp32 storage keep of it."""
        kept = ", ".join(f"{dtype_name(t)} keeps {self.kept(t):.0%}" for t in MEASURED)
        return (
            f"{self.name}: update {self.rms_steps:.3g} {dtype_name(storage)} rounding steps "
            f"(rms); {kept}"
        )


def lora_update(model: torch.nn.Module, name: str, storage: torch.dtype) -> UpdateSize:
    """The size of the active LoRA adapters of a PEFT `model` over its base weights."""
    from peft.tuners.lora import LoraLayer

    size = UpdateSize(name)
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, LoraLayer):
                continue
            weight = module.get_base_layer().weight
            for adapter in module.active_adapters:
                if adapter in module.lora_A:
                    size.add(weight, module.get_delta_weight(adapter), storage)
    return size


def store_dtype(sizes: list[UpdateSize], stored: torch.dtype) -> torch.dtype:
    """The dtype to write merged weights in: the base's, unless it rounds an update away.

    Every adapter must keep `KEEP_THRESHOLD` of its update (the last one, GRPO's, is the one
    at risk: SFT's updates are hundreds of rounding steps); otherwise fp32, which keeps it.
    """
    if all(size.kept(stored) >= KEEP_THRESHOLD for size in sizes):
        return stored
    return torch.float32
