"""A GRPO-sized update survives the merge (both backends) and the f16 GGUF export of a bf16 model.

GRPO at QMD's learning rate moves weights by a fraction of a bf16 rounding step: stored in
bf16, the merged model is the SFT model again. The tiny model is stored in bf16 here (as
Qwen3-1.7B is) and given an adapter whose update is 0.1 bf16 rounding steps (rms): the merge
must notice, store fp32, and the f16 GGUF made from it must still carry >= 90% of the update.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("peft")
pytest.importorskip("gguf")

import gguf
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from qmd_ft.backends.cuda.loading import lora_update
from qmd_ft.backends.cuda.merge import merge
from qmd_ft.backends.precision import UpdateSize, rounded, ulp
from qmd_ft.gguf.export import export_gguf

UPDATE_STEPS = 0.1
"""The adapter's update in bf16 rounding steps (rms of the update over rms of the steps).

At 0.1 a bf16 store keeps about a third of it and f16 (8x finer) about all; QMD's GRPO run,
at about 0.03, keeps ~10% in bf16 and ~70% in f16 (then `merge` warns about the GGUF too)."""


def bf16_copy(tiny_model_dir: Path, out: Path) -> Path:
    """The tiny model stored in bf16, config included (what `merge` reads as the base dtype)."""
    shutil.copytree(tiny_model_dir, out)
    weights = load_file(out / "model.safetensors")
    bf16 = {name: t.to(torch.bfloat16) for name, t in weights.items()}
    save_file(bf16, out / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "dtype": "bfloat16"}))
    return out


def small_adapter(base: Path, out: Path, steps: float) -> Path:
    """A LoRA on q/v (as GRPO's) scaled so its update is `steps` bf16 rounding steps (rms)."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    policy = get_peft_model(model, lora, autocast_adapter_dtype=True)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 1.0)
        scale = steps / lora_update(policy, "probe", "bfloat16").rms_steps
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.mul_(scale)
    policy.save_pretrained(out)
    return out


def gguf_tensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a GGUF file as float64."""
    return {t.name: np.asarray(t.data, dtype=np.float64) for t in gguf.GGUFReader(path).tensors}


def kept_share(
    before: dict[str, np.ndarray], after: dict[str, np.ndarray], update: dict[str, np.ndarray]
) -> float:
    """<after - before, update> / |update|^2 over all tensors: the share of the update kept."""
    along = total = 0.0
    for name, delta in update.items():
        moved = after[name].reshape(-1) - before[name].reshape(-1)
        along += float(np.dot(moved, delta.reshape(-1)))
        total += float(np.dot(delta.reshape(-1), delta.reshape(-1)))
    assert total > 0
    return along / total


def test_rounding_and_its_step_match_torchs_dtypes() -> None:
    torch.manual_seed(0)
    x = torch.randn(10_000) * torch.logspace(-6, 2, 10_000)
    for dtype in (torch.bfloat16, torch.float16):
        name = str(dtype).removeprefix("torch.")
        assert np.array_equal(rounded(x.numpy(), name), x.to(dtype).float().numpy())
    w = np.array([1.0, 0.75, -3.0, 0.02], dtype=np.float32)
    assert ulp(w, "bfloat16").tolist() == pytest.approx([2**-7, 2**-8, 2**-6, 2**-13])
    for name in ("bfloat16", "float16"):
        w = rounded(w, name)  # on the dtype's grid, as stored weights are
        step = ulp(w, name)
        assert np.array_equal(rounded(w + 0.6 * step, name), w + step)  # rounds up a step
        assert np.array_equal(rounded(w + 0.4 * step, name), w)  # rounds back


def test_update_size_counts_what_each_dtype_keeps() -> None:
    rng = np.random.default_rng(0)
    weight = rounded(rng.normal(0, 0.05, (64, 64)).astype(np.float32), "bfloat16")
    size = UpdateSize("tiny", "bfloat16")
    size.add(weight, 0.03 * ulp(weight, "bfloat16") * rng.normal(size=(64, 64)))
    assert size.rms_steps == pytest.approx(0.03, rel=0.1)
    assert size.kept("bfloat16") == 0.0  # 3% of a step: every weight rounds back
    assert size.kept("float32") == pytest.approx(1.0, abs=1e-3)
    assert "update 0.0" in size.line() and "bfloat16 keeps 0%" in size.line()


def test_grpo_sized_update_survives_merge_and_f16_gguf(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = bf16_copy(tiny_model_dir, tmp_path / "base")
    adapter = small_adapter(base, tmp_path / "grpo", UPDATE_STEPS)
    out = merge(str(base), [str(adapter)], tmp_path / "merged")

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["base_dtype"] == "bfloat16" and manifest["dtype"] == "float32"
    update = manifest["updates"][str(adapter)]
    assert update["rms_bfloat16_steps"] == pytest.approx(UPDATE_STEPS, rel=0.05)
    assert update["kept_bfloat16"] < 0.5  # what a bf16 release would have kept
    assert update["kept_float16"] >= 0.9 and update["kept_float32"] == pytest.approx(1.0)
    printed = capsys.readouterr().out
    assert "bfloat16 keeps" in printed and "storing the merged weights in float32" in printed

    # The release's GGUF: f16 from the fp32 merged weights, against the base's own f16 GGUF.
    base_f16 = gguf_tensors(export_gguf(base, tmp_path / "base-f16.gguf", "f16"))
    merged_f16 = gguf_tensors(export_gguf(out, tmp_path / "merged-f16.gguf", "f16"))
    base_f32 = gguf_tensors(export_gguf(base, tmp_path / "base-f32.gguf", "f32"))
    merged_f32 = gguf_tensors(export_gguf(out, tmp_path / "merged-f32.gguf", "f32"))
    update = {name: merged_f32[name] - base_f32[name] for name in base_f32}
    assert kept_share(base_f16, merged_f16, update) >= 0.9
    # Rounded to bf16 before the export (the old release), the update is mostly gone.
    as_bf16 = {
        k: torch.from_numpy(v).to(torch.bfloat16).double().numpy() for k, v in merged_f32.items()
    }
    assert kept_share(base_f32, as_bf16, update) < 0.5


def test_a_large_update_keeps_the_base_dtype(tiny_model_dir: Path, tmp_path: Path) -> None:
    base = bf16_copy(tiny_model_dir, tmp_path / "base")
    adapter = small_adapter(base, tmp_path / "sft", 200.0)  # SFT-sized: hundreds of steps
    out = merge(str(base), [str(adapter)], tmp_path / "merged")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dtype"] == "bfloat16"
    assert manifest["updates"][str(adapter)]["kept_bfloat16"] >= 0.99
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.dtype == torch.bfloat16


def test_mlx_merge_keeps_the_update_like_the_cuda_merge(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("mlx_lm")
    from qmd_ft.backends.mlx.fuse import merge as mlx_merge

    base = bf16_copy(tiny_model_dir, tmp_path / "base")
    adapter = small_adapter(base, tmp_path / "grpo", UPDATE_STEPS)
    ours = mlx_merge(str(base), [str(adapter)], tmp_path / "mlx")
    theirs = merge(str(base), [str(adapter)], tmp_path / "cuda")
    manifest = json.loads((ours / "manifest.json").read_text())
    assert manifest["dtype"] == "float32" and manifest["base_dtype"] == "bfloat16"
    update = manifest["updates"][str(adapter)]
    assert update["kept_bfloat16"] < 0.5 and update["kept_float32"] == pytest.approx(1.0)
    assert json.loads((ours / "config.json").read_text())["dtype"] == "float32"
    mlx_weights, cuda_weights = (
        load_file(ours / "model.safetensors"),
        load_file(theirs / "model.safetensors"),
    )
    name = "model.layers.0.self_attn.q_proj.weight"
    assert mlx_weights[name].dtype == torch.float32
    assert torch.allclose(mlx_weights[name], cuda_weights[name], atol=1e-7)
    loaded = AutoModelForCausalLM.from_pretrained(ours)
    assert loaded.dtype == torch.float32  # transformers keeps the fp32 the merge stored
