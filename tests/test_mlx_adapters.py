"""mlx backend: LoRA adapters between mlx-lm and PEFT, and fused HF model directories.

Every check is numerical: the same adapter must give the same logits (fp32, max abs diff
< 1e-4) in mlx and in transformers + PEFT, whichever side wrote it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
pytest.importorskip("mlx_lm")

from qmd_ft.backends.mlx.adapters import (  # noqa: E402 (after the skips)
    PEFT_PREFIX,
    apply_adapter,
    lora_weights,
    mlx_adapter_to_peft,
    peft_config,
    peft_scale,
    peft_to_mlx_adapter,
    read_peft,
    save_peft,
)
from qmd_ft.backends.mlx.fuse import fuse_lora, merge  # noqa: E402
from qmd_ft.backends.mlx.models import add_lora, load_stack, lora_keys  # noqa: E402
from qmd_ft.errors import UserError  # noqa: E402
from qmd_ft.prompt import render_example  # noqa: E402

TOL = 1e-4
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TEXT = render_example("rust error handling", "lex: rust Result\nvec: how to handle errors")


def token_ids(model_dir: Path) -> list[int]:
    """The test text's ids under the model's own tokenizer."""
    _, tokenizer, _ = load_stack(str(model_dir))
    return tokenizer.encode(TEXT)


def mlx_logits(model, ids: list[int]) -> np.ndarray:
    """fp32 logits of one sequence."""
    return np.array(model(mx.array([ids])).astype(mx.float32))


def hf_logits(model_or_path, ids: list[int], adapter: Path | None = None) -> np.ndarray:
    """Logits from transformers (and PEFT when `adapter` is given), fp32 on the CPU."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(model_or_path), dtype=torch.float32
    )
    if adapter is not None:
        peft = pytest.importorskip("peft")
        model = peft.PeftModel.from_pretrained(model, str(adapter))
    with torch.no_grad():
        return model(torch.tensor([ids])).logits.numpy()


def random_lora(model_dir: Path, rank: int, alpha: float, targets: list[str]):
    """The tiny model with LoRA on `targets` whose A and B are both random (B = 0 would hide
    every transpose or scale mistake)."""
    model, _, _ = load_stack(str(model_dir))
    add_lora(model, lora_keys(model, targets), rank, alpha / rank, 0.0)
    mx.random.seed(3)
    weights = {k: mx.random.normal(v.shape) * 0.05 for k, v in lora_weights(model).items()}
    model.load_weights(list(weights.items()), strict=False)
    return model


def test_mlx_adapter_saved_as_peft_gives_same_logits_in_transformers(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    ids = token_ids(tiny_model_dir)
    model = random_lora(tiny_model_dir, rank=4, alpha=16, targets=TARGETS)
    out = tmp_path / "peft"
    save_peft(model, out, peft_config(4, 16, 0.0, TARGETS, str(tiny_model_dir)))

    config = json.loads((out / "adapter_config.json").read_text())
    assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", 4, 16)
    _, weights = read_peft(out)
    stored = mx.load(str(out / "adapter_model.safetensors"))
    key = f"{PEFT_PREFIX}model.layers.0.self_attn.q_proj.lora_A.weight"
    assert stored[key].shape == (4, 128)  # PEFT: A is (r, in)
    assert len(weights) == 2 * len(TARGETS) * 4  # A and B, every target, 4 blocks

    expected = mlx_logits(model, ids)
    got = hf_logits(tiny_model_dir, ids, adapter=out)
    assert np.abs(got - expected).max() < TOL


def test_peft_adapter_gives_same_logits_in_mlx(tiny_model_dir: Path, tmp_path: Path) -> None:
    from mlx_lm.tuner.lora import LoRALinear

    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    ids = token_ids(tiny_model_dir)
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    lora = peft.LoraConfig(
        r=4,
        lora_alpha=12,
        target_modules=["q_proj", "v_proj", "down_proj"],
        init_lora_weights=False,
    )
    peft_model = peft.get_peft_model(hf, lora)
    with torch.no_grad():
        expected = peft_model(torch.tensor([ids])).logits.numpy()
    peft_model.save_pretrained(str(tmp_path / "peft"))

    unfused, _, _ = load_stack(str(tiny_model_dir))
    apply_adapter(unfused, tmp_path / "peft")
    scales = {m.scale for _, m in unfused.named_modules() if isinstance(m, LoRALinear)}
    assert scales == {3.0}  # lora_alpha / r
    assert np.abs(mlx_logits(unfused, ids) - expected).max() < TOL

    fused, _, _ = load_stack(str(tiny_model_dir), [str(tmp_path / "peft")])
    assert not lora_weights(fused)
    assert np.abs(mlx_logits(fused, ids) - expected).max() < TOL


def test_mlx_lm_adapter_directories_convert_both_ways(tiny_model_dir: Path, tmp_path: Path) -> None:
    from mlx_lm.utils import load

    ids = token_ids(tiny_model_dir)
    model = random_lora(tiny_model_dir, rank=8, alpha=4, targets=["q_proj", "up_proj"])
    expected = mlx_logits(model, ids)
    save_peft(model, tmp_path / "peft", peft_config(8, 4, 0.0, ["q_proj", "up_proj"], None))

    peft_to_mlx_adapter(tmp_path / "peft", tmp_path / "mlx", num_layers=4)
    mlx_config = json.loads((tmp_path / "mlx" / "adapter_config.json").read_text())
    assert mlx_config["lora_parameters"]["scale"] == 0.5  # mlx-lm's scale is alpha / r
    loaded, _ = load(str(tiny_model_dir), adapter_path=str(tmp_path / "mlx"))
    assert np.abs(mlx_logits(loaded, ids) - expected).max() < TOL

    mlx_adapter_to_peft(tmp_path / "mlx", tmp_path / "back", base_model=str(tiny_model_dir))
    back = json.loads((tmp_path / "back" / "adapter_config.json").read_text())
    assert (back["r"], back["lora_alpha"], back["target_modules"]) == (8, 4, ["q_proj", "up_proj"])
    original = mx.load(str(tmp_path / "peft" / "adapter_model.safetensors"))
    again = mx.load(str(tmp_path / "back" / "adapter_model.safetensors"))
    assert original.keys() == again.keys()
    assert all(mx.array_equal(original[k], again[k]) for k in original)
    assert np.abs(hf_logits(tiny_model_dir, ids, adapter=tmp_path / "back") - expected).max() < TOL


def test_fused_model_loads_in_transformers_with_mlx_logits(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    ids = token_ids(tiny_model_dir)
    model = random_lora(tiny_model_dir, rank=4, alpha=8, targets=TARGETS)
    expected = mlx_logits(model, ids)
    save_peft(model, tmp_path / "peft", peft_config(4, 8, 0.0, TARGETS, str(tiny_model_dir)))

    fuse_lora(model)
    assert np.abs(mlx_logits(model, ids) - expected).max() < TOL

    out = merge(str(tiny_model_dir), [str(tmp_path / "peft")], tmp_path / "merged")
    files = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "manifest.json"} <= files
    assert not (out / "adapter_config.json").exists()
    assert (out / "tokenizer_config.json").read_bytes() == (
        tiny_model_dir / "tokenizer_config.json"
    ).read_bytes()
    assert np.abs(hf_logits(out, ids) - expected).max() < TOL


def test_peft_scale_and_unsupported_options(tmp_path: Path) -> None:
    assert peft_scale({"r": 16, "lora_alpha": 32}) == 2.0
    assert peft_scale({"r": 16, "lora_alpha": 32, "use_rslora": True}) == 8.0
    (tmp_path / "adapter_config.json").write_text(
        json.dumps({**peft_config(4, 8, 0.0, ["q_proj"], None), "use_dora": True})
    )
    with pytest.raises(UserError, match="use_dora"):
        read_peft(tmp_path)


def test_unknown_target_module_is_a_clear_error(tiny_model_dir: Path) -> None:
    model, _, _ = load_stack(str(tiny_model_dir))
    with pytest.raises(UserError, match="qkv_proj"):
        lora_keys(model, ["q_proj", "qkv_proj"])
