"""How much of an adapter's update survives storing the merged weights in a given dtype.

GRPO at QMD's settings (lr 5e-7, 200 steps, LoRA r4) moves the weights by a few percent of a
bf16 rounding step. Rounding the merged weights to bf16 then puts almost every weight back on
the value it had: the release would be the SFT model under a new name. So every merge (both
backends) measures, per adapter, the update against the storage dtype's resolution and how
much of it each dtype keeps:

    kept(dtype) = <round(W + D) - round(W), D> / <D, D>

the share of the update D that the rounded weights still move along D (rounding noise across D
is not the update, and averages away). 1.0 keeps all of it, 0 none; what a GGUF file keeps is
the same number for its type (f16 here; the quantized types keep less than f16).

Plain numpy on fp32 arrays, so the torch and the mlx backend share it (each converts its own
tensors); bf16 rounding is done on the bits, round-to-nearest-even as both frameworks do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KEEP_THRESHOLD = 0.9
"""Below this share of an update kept, a dtype is not good enough to store the release in."""

MANTISSA_DIGITS = {"bfloat16": 7, "float16": 10, "float32": 23}
"""Explicit mantissa bits of the dtypes a release or its GGUF can hold weights in."""

SMALLEST_NORMAL = {"bfloat16": 2.0**-126, "float16": 2.0**-14, "float32": 2.0**-126}


def rounded(x: np.ndarray, dtype: str) -> np.ndarray:
    """fp32 `x` rounded to `dtype` (nearest, ties to even) and widened back to fp32."""
    x = np.asarray(x, dtype=np.float32)
    if dtype == "float32":
        return x
    if dtype == "float16":
        return x.astype(np.float16).astype(np.float32)
    bits = x.view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32)


def ulp(weights: np.ndarray, dtype: str) -> np.ndarray:
    """The spacing of `dtype`'s values at each weight (fp32): its rounding step there."""
    magnitude = np.maximum(np.abs(np.asarray(weights, dtype=np.float32)), SMALLEST_NORMAL[dtype])
    # |w| = m * 2**e with m in [0.5, 1): the spacing there is 2**(e - 1 - mantissa digits).
    _, exponent = np.frexp(magnitude)
    return np.ldexp(np.float32(1.0), exponent - 1 - MANTISSA_DIGITS[dtype]).astype(np.float32)


@dataclass
class UpdateSize:
    """What one adapter changes, summed over the weight matrices it touches."""

    name: str
    storage: str
    """The dtype the base checkpoint is stored in: the rounding step the size is told in."""
    delta_sq: float = 0.0
    ulp_sq: float = 0.0
    along: dict[str, float] = field(default_factory=dict)
    """Per dtype: sum of (round(W + D) - round(W)) * D."""

    def add(self, weight: np.ndarray, delta: np.ndarray) -> None:
        """Account for one weight matrix (fp32, before the update) and its update."""
        w = np.asarray(weight, dtype=np.float32)
        d = np.asarray(delta, dtype=np.float32)
        d64 = d.astype(np.float64)
        self.delta_sq += float(np.dot(d64.ravel(), d64.ravel()))
        step = ulp(w, self.storage).astype(np.float64)
        self.ulp_sq += float(np.dot(step.ravel(), step.ravel()))
        for dtype in MANTISSA_DIGITS:
            moved = rounded(w + d, dtype).astype(np.float64) - rounded(w, dtype)
            self.along[dtype] = self.along.get(dtype, 0.0) + float(
                np.dot(moved.ravel(), d64.ravel())
            )

    def kept(self, dtype: str) -> float:
        """Share of the update `dtype` keeps (1.0 for an update of zero: nothing to lose)."""
        return self.along.get(dtype, 0.0) / self.delta_sq if self.delta_sq > 0 else 1.0

    @property
    def rms_steps(self) -> float:
        """The update's rms over the rounding step's rms (storage dtype), over all weights.

        A ratio of norms rather than a mean of per-weight ratios, which the few weights near
        zero (whose rounding step is tiny) would dominate.
        """
        return (self.delta_sq / self.ulp_sq) ** 0.5 if self.ulp_sq else 0.0

    def summary(self) -> dict[str, float]:
        """The numbers a manifest records: size in storage steps, share kept per dtype."""
        return {
            f"rms_{self.storage}_steps": round(self.rms_steps, 6),
            **{f"kept_{dtype}": round(self.kept(dtype), 4) for dtype in MANTISSA_DIGITS},
        }

    def line(self) -> str:
        """One log line: the update's size and what bf16, f16 and fp32 storage keep of it."""
        kept = ", ".join(f"{dtype} keeps {self.kept(dtype):.0%}" for dtype in MANTISSA_DIGITS)
        return (
            f"{self.name}: update {self.rms_steps:.3g} {self.storage} rounding steps (rms); {kept}"
        )


def store_dtype(sizes: list[UpdateSize], stored: str) -> str:
    """The dtype to write merged weights in: the base's, unless it rounds an update away.

    Every adapter must keep `KEEP_THRESHOLD` of its update (the last one, GRPO's, is the one
    at risk: SFT's updates are hundreds of rounding steps); otherwise fp32, which keeps it.
    """
    if all(size.kept(stored) >= KEEP_THRESHOLD for size in sizes):
        return stored
    return "float32"


def report(sizes: list[UpdateSize], stored: str, dtype: str) -> None:
    """One line per adapter (its size in rounding steps, what each dtype keeps), then warnings.

    Warns when the stored dtype had to change, and when even an f16 GGUF would keep less than
    `KEEP_THRESHOLD` of an update (quantized GGUF types keep less still): the release then
    holds the update only in its fp32 safetensors.
    """
    for size in sizes:
        print(size.line())
    if dtype != stored:
        print(
            f"warning: {stored} would round an update away; storing the merged weights in "
            f"{dtype} to keep it"
        )
    for size in sizes:
        if size.kept("float16") < KEEP_THRESHOLD:
            print(
                f"warning: {size.name}: a GGUF keeps at most {size.kept('float16'):.0%} of this "
                "update in f16, less when quantized; eval the GGUF before publishing it"
            )
