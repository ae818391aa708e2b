"""cuda backend SFT on the tiny model (CPU): completion-only labels, LoRA and full runs, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

import torch
from cuda_support import LORA, log_history, make_config, prepared, write_examples
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from qmd_ft.backend import TrainRequest
from qmd_ft.backends.cuda.data import read_split
from qmd_ft.backends.cuda.sft import IGNORE_INDEX, run_sft, tokenize_example, tokenized_dataset
from qmd_ft.data.prepare import INFO_FILE, TRAIN_FILE, VAL_FILE
from qmd_ft.errors import UserError
from qmd_ft.prompt import IM_END

ROOT = Path(__file__).resolve().parents[1]


def _rows(data: Path) -> list[dict]:
    return [json.loads(line) for line in (data / TRAIN_FILE).read_text().splitlines()]


def test_prompt_tokens_are_masked_and_trl_keeps_our_labels(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = _rows(prepared(tmp_path))
    row = rows[0]
    ex = tokenize_example(tokenizer, row["prompt"], row["completion"])
    n_prompt = len(tokenizer(row["prompt"])["input_ids"])
    assert ex["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert ex["labels"][n_prompt:] == ex["input_ids"][n_prompt:]
    # The trained tokens are exactly the completion, ending in one <|im_end|> and its newline.
    trained = tokenizer.decode(ex["input_ids"][n_prompt:])
    assert trained == row["completion"] and trained.count(IM_END) == 1
    assert tokenizer.decode(ex["input_ids"]) == row["text"]

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    args = SFTConfig(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        report_to="none",
        max_length=512,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=tokenized_dataset(tokenizer, rows),
        processing_class=tokenizer,
    )
    first = trainer.train_dataset[0]
    assert first["input_ids"] == ex["input_ids"] and first["labels"] == ex["labels"]


def test_lora_sft_lowers_loss_and_writes_a_loadable_adapter(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from peft import PeftModel

    data = prepared(tmp_path)
    out = tmp_path / "sft"
    cfg = make_config(tiny_model_dir, out, data, training={"eval_steps": 10})
    assert run_sft(TrainRequest(cfg, data, out, device="cpu", max_steps=30)) == out

    losses = [e["loss"] for e in log_history(out) if "loss" in e]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3, losses
    assert any("eval_loss" in e for e in log_history(out))

    manifest = json.loads((out / "manifest.json").read_text())
    info = json.loads((data / INFO_FILE).read_text())
    assert manifest["kind"] == "sft-adapter"
    assert manifest["data_sha256"] == info["inputs_sha256"]
    assert manifest["config"]["lora"]["rank"] == LORA["rank"]
    assert manifest["parents"] == [str(tiny_model_dir)]
    assert {"torch", "transformers", "trl", "peft"} <= set(manifest["versions"])
    assert "git_commit" in manifest
    assert manifest["metrics"]["global_step"] == 30
    assert manifest["metrics"]["eval_loss"] > 0

    assert (out / "tokenizer.json").is_file() and (out / "adapter_config.json").is_file()
    weights = load_file(out / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().max() > 0 for k, v in weights.items())
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([AutoTokenizer.from_pretrained(out)(_rows(data)[0]["text"])["input_ids"]])
    with torch.no_grad():
        before = base(ids).logits
        after = PeftModel.from_pretrained(base, out)(ids).logits
    assert not torch.allclose(before, after)


def test_full_finetuning_without_lora(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = prepared(tmp_path)
    out = tmp_path / "full"
    cfg = make_config(tiny_model_dir, out, data, lora=None, training={"learning_rate": 3e-3})
    run_sft(TrainRequest(cfg, data, out, device="cpu", max_steps=12))

    assert not (out / "adapter_config.json").exists()
    assert json.loads((out / "manifest.json").read_text())["kind"] == "sft-model"
    losses = [e["loss"] for e in log_history(out) if "loss" in e]
    assert losses[-1] < losses[0] - 1.0, losses
    tuned = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert tuned.dtype == torch.float32
    name = "model.layers.0.mlp.down_proj.weight"
    assert not torch.equal(tuned.state_dict()[name], base.state_dict()[name])


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qmd_ft", *args], cwd=cwd, capture_output=True, text=True
    )


def test_dry_run_prints_both_configs_and_the_plan_and_starts_nothing(tmp_path: Path) -> None:
    write_examples(tmp_path / "data" / "examples.jsonl")  # what the plan prepares data/train from
    (tmp_path / "evals").mkdir()
    (tmp_path / "evals" / "queries.txt").write_text("# T\nrust async\n")  # kept out of it
    r = _cli(
        "train", "all", "--dry-run", "--backend", "cuda",
        "--config", str(ROOT / "configs/sft.yaml"),
        "--grpo-config", str(ROOT / "configs/grpo.yaml"),
        "--output", "runs/a/sft", "--max-steps", "3", "--grpo-set", "grpo.beta=0.1",
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "# sft: " in r.stdout and "# grpo: " in r.stdout
    assert "beta: 0.1" in r.stdout and "sft: runs/a/sft" in r.stdout
    assert "prepare data/train from data/*.jsonl" in r.stdout
    assert "-> runs/a/sft" in r.stdout and "-> runs/a/grpo" in r.stdout
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data" / "train").exists()


def test_config_errors_stop_all_before_sft_trains(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = prepared(tmp_path)
    sft = tmp_path / "sft.yaml"
    sft.write_text(f"model: {{base: {tiny_model_dir}, output: {tmp_path / 'run/sft'}}}\n")
    grpo = tmp_path / "grpo.yaml"
    # 3 completions per step cannot hold groups of 4 generations.
    grpo.write_text(f"model: {{base: {tiny_model_dir}}}\ntraining: {{batch_size: 3}}\n")
    r = _cli(
        "train", "all", "--config", str(sft), "--grpo-config", str(grpo), "--device", "cpu",
        "--set", f"dataset.name={data}", "--grpo-set", f"dataset.name={data}",
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.startswith(f"error: {grpo}") and r.stderr.count("\n") == 1, r.stderr
    assert "training.batch_size (3) x training.gradient_accumulation_steps (1)" in r.stderr
    assert "grpo.num_generations (4)" in r.stderr
    assert not (tmp_path / "run").exists()


def test_preflight_names_missing_models_and_unusable_sft(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from qmd_ft.backends.cuda.preflight import check_stage

    data = prepared(tmp_path)
    cfg = make_config(tmp_path / "nope", tmp_path / "out", data)
    with pytest.raises(UserError, match=r"model.base .*nope: not found"):
        check_stage("sft", TrainRequest(cfg, data, tmp_path / "out"), 1, False)
    grpo = make_config(tiny_model_dir, tmp_path / "g", data, model={"sft": str(tmp_path / "s")})
    with pytest.raises(UserError, match=r"model.sft .*: not found; train SFT first"):
        check_stage("grpo", TrainRequest(grpo, data, tmp_path / "g"), 1, False)
    check_stage("grpo", TrainRequest(grpo, data, tmp_path / "g"), 1, True)  # made earlier in `all`
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "adapter_config.json").write_text("{}")
    full = make_config(
        tiny_model_dir, tmp_path / "g", data, lora=None, model={"sft": str(tmp_path / "s")}
    )
    with pytest.raises(UserError, match=r"full-parameter GRPO .* needs a merged model"):
        check_stage("grpo", TrainRequest(full, data, tmp_path / "g"), 1, False)
    (tmp_path / "out" / "checkpoint-3").mkdir(parents=True)
    ok = make_config(tiny_model_dir, tmp_path / "out", data)
    with pytest.raises(UserError, match="already holds checkpoint-3: pass --resume"):
        check_stage("sft", TrainRequest(ok, data, tmp_path / "out"), 1, False)
    check_stage("sft", TrainRequest(ok, data, tmp_path / "out", resume=True), 1, False)


def test_a_damaged_split_stops_with_file_and_line(tmp_path: Path) -> None:
    data = prepared(tmp_path)
    train = data / TRAIN_FILE
    lines = train.read_text().splitlines()
    train.write_text("\n".join([lines[0], '{"prompt": "p", "completion": ', *lines[1:]]) + "\n")
    with pytest.raises(UserError, match=rf"^{train}:2: invalid JSON: .*\(column \d+\);"):
        read_split(data, TRAIN_FILE)
    (data / VAL_FILE).write_text('{"prompt": "p"}\n{"completion": "c"}\n')
    with pytest.raises(UserError, match=r"val.jsonl:1: missing key\(s\) 'completion' \(and 1 more"):
        read_split(data, VAL_FILE)


def test_short_run_manifest_has_train_loss_and_resume_keeps_its_step_total(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = prepared(tmp_path)
    out = tmp_path / "sft"
    # logging_steps above the run's length: no loss line is logged, only the final summary.
    cfg = make_config(tiny_model_dir, out, data, training={"logging_steps": 10})
    run_sft(TrainRequest(cfg, data, out, device="cpu", max_steps=2))
    assert not any("loss" in e for e in log_history(out))
    loss = json.loads((out / "manifest.json").read_text())["metrics"]["train_loss"]
    summary = next(e for e in log_history(out) if "train_loss" in e)  # train()'s TrainOutput
    assert loss == pytest.approx(summary["train_loss"]) and loss > 0

    # Resuming the finished 2-step run towards 3 steps would start at the schedule's end.
    assert (out / "checkpoint-2" / "trainer_state.json").is_file()
    with pytest.raises(UserError, match=r"planned for 2 steps.*--max-steps 2"):
        run_sft(TrainRequest(cfg, data, out, device="cpu", max_steps=3, resume=True))
    assert not (out / "checkpoint-3").exists()


@pytest.mark.gpu
def test_bf16_lora_sft_on_gpu(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = prepared(tmp_path)
    out = tmp_path / "sft"
    run_sft(TrainRequest(make_config(tiny_model_dir, out, data), data, out, "cuda", max_steps=5))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["device"].startswith("cuda") and manifest["metrics"]["global_step"] == 5
