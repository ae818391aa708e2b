"""Manifests: a merged model's lineage, followed back to the model it was trained from."""

from __future__ import annotations

from pathlib import Path

from qmd_ft.config import load_config
from qmd_ft.manifest import lineage, origin_model, read_manifest, write_manifest


def test_lineage_names_the_origin_and_each_stage(tmp_path: Path) -> None:
    sft_cfg = load_config(None, {"model": {"base": "Qwen/Qwen3-0.6B"}, "lora": {"rank": 8}})
    grpo_cfg = load_config(None, {"grpo": {"beta": 0.1}, "lora": {"rank": 4}})
    # A fully fine-tuned SFT directory is the base the GRPO adapter is merged onto.
    sft = tmp_path / "sft"
    write_manifest(sft, "sft-model", config=sft_cfg.model_dump(), data_hash="d1")
    grpo = tmp_path / "grpo"
    write_manifest(grpo, "grpo-adapter", config=grpo_cfg.model_dump(), data_hash="d2")

    made_of = lineage(str(sft), [str(grpo)])
    assert made_of["base_model"] == "Qwen/Qwen3-0.6B"  # through the SFT dir's own config
    [stage] = made_of["stages"]
    assert stage["kind"] == "grpo-adapter" and stage["data_sha256"] == "d2"
    assert stage["grpo"]["beta"] == 0.1 and stage["lora"]["rank"] == 4 and "training" in stage

    merged = tmp_path / "merged"
    write_manifest(merged, "merged", parents=[str(sft), str(grpo)], extra=made_of)
    assert origin_model(str(merged)) == "Qwen/Qwen3-0.6B"
    assert read_manifest(merged)["stages"] == made_of["stages"]


def test_origin_of_a_hub_id_or_plain_dir_is_itself(tmp_path: Path) -> None:
    assert origin_model("Qwen/Qwen3-1.7B") == "Qwen/Qwen3-1.7B"
    assert origin_model(str(tmp_path)) == str(tmp_path)
    sft_only = lineage("Qwen/Qwen3-1.7B", [str(tmp_path)])  # an adapter without a manifest
    assert sft_only == {
        "base_model": "Qwen/Qwen3-1.7B",
        "stages": [{"adapter": str(tmp_path), "kind": "adapter", "data_sha256": None}],
    }
