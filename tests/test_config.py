"""Config: QMD's original files load with their values; errors name file and key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmd_ft.config import load_config, parse_overrides
from qmd_ft.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def test_original_sft_config_values() -> None:
    cfg = load_config(ROOT / "configs/sft.yaml")
    assert cfg.model.base == "Qwen/Qwen3-1.7B"
    assert cfg.lora is not None
    assert (cfg.lora.rank, cfg.lora.alpha, cfg.lora.dropout) == (16, 32, 0.0)
    assert cfg.lora.target_modules == [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ]
    t = cfg.training
    assert (t.epochs, t.batch_size, t.gradient_accumulation_steps) == (5, 4, 4)
    assert t.learning_rate == pytest.approx(2e-4)
    assert (t.lr_scheduler, t.warmup_ratio, t.max_length) == ("cosine", 0.03, 512)
    assert cfg.dataset.eval_split == 0.1


def test_qmd_compat_dataset_keys_load_but_refuse_what_is_not_done() -> None:
    """text_field and split (QMD's sft.yaml sets them) accept only what training does."""
    cfg = load_config(ROOT / "configs/sft.yaml")
    assert (cfg.dataset.text_field, cfg.dataset.split) == ("text", "train")
    fields = type(cfg.dataset).model_fields
    assert "compatibility" in (fields["text_field"].description or "")
    assert "compatibility" in (fields["split"].description or "")
    assert "import-hf" in (fields["name"].description or "")
    for key, value in (("text_field", "content"), ("split", "validation")):
        with pytest.raises(UserError, match=rf"dataset\.{key}: .*only '(text|train)' is accepted"):
            load_config(ROOT / "configs/sft.yaml", [f"dataset.{key}={value}"])


def test_original_grpo_config_values() -> None:
    cfg = load_config(ROOT / "configs/grpo.yaml")
    assert cfg.model.sft == "outputs/sft"
    assert cfg.lora is not None
    assert (cfg.lora.rank, cfg.lora.alpha, cfg.lora.dropout) == (4, 8, 0.05)
    assert cfg.lora.target_modules == ["q_proj", "v_proj"]
    g, t = cfg.grpo, cfg.training
    assert (g.num_generations, g.max_completion_length, g.beta) == (4, 200, 0.04)
    assert t.learning_rate == pytest.approx(5e-7)
    assert (t.batch_size, t.gradient_accumulation_steps, t.max_grad_norm) == (2, 8, 0.5)
    assert (t.max_steps, cfg.dataset.max_samples) == (200, 1000)


def test_no_lora_section_means_full_finetune(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  base: x\n")
    assert load_config(p).full_finetune


def test_unknown_key_names_file_and_path(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("training:\n  learning_rat: 1e-4\n")
    with pytest.raises(UserError, match=r"bad\.yaml: training\.learning_rat: unknown key"):
        load_config(p)


def test_bad_value_names_key_path(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("lora:\n  rank: -1\n")
    with pytest.raises(UserError, match=r"lora\.rank: .*greater than 0"):
        load_config(p)


def test_beta_zero_refused_with_reason() -> None:
    with pytest.raises(UserError, match=r"grpo\.beta: .*must be > 0.*drifts"):
        load_config(ROOT / "configs/grpo.yaml", ["grpo.beta=0"])


def test_overrides_win_and_parse_scalars() -> None:
    cfg = load_config(ROOT / "configs/sft.yaml", ["training.epochs=1", "model.base=tiny"])
    assert cfg.training.epochs == 1 and cfg.model.base == "tiny"
    assert parse_overrides(["a.b=2e-4", "c=true"]) == {"a": {"b": "2e-4"}, "c": True}


def test_invalid_yaml_reports_line(tmp_path: Path) -> None:
    p = tmp_path / "broken.yaml"
    p.write_text("model:\n  base: [unclosed\n")
    with pytest.raises(UserError, match=r"broken\.yaml:\d+: invalid YAML"):
        load_config(p)


def test_missing_file() -> None:
    with pytest.raises(UserError, match="config file not found"):
        load_config("nope.yaml")


def test_manifest_refuses_secret_keys_only(tmp_path: Path) -> None:
    from qmd_ft.manifest import read_manifest, write_manifest

    cfg = load_config(ROOT / "configs/sft.yaml").model_dump(mode="json")
    write_manifest(tmp_path / "a", "sft", config=cfg)  # eval.max_new_tokens is no secret
    assert read_manifest(tmp_path / "a")["config"]["eval"]["max_new_tokens"] == 200
    with pytest.raises(ValueError, match="secret-like key"):
        write_manifest(tmp_path / "b", "sft", extra={"auth": {"hf_token": "hf_x"}})
