"""cuda backend GRPO on the tiny model (CPU): a fresh LoRA learns from qmd_ft's reward."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

from cuda_support import log_history, make_config, memorized_model, prepared, write_examples
from safetensors.torch import load_file

from qmd_ft.backend import TrainRequest
from qmd_ft.backends.cuda.grpo import COMPLETIONS_FILE, SCORED_TEXT, rubric_reward, run_grpo
from qmd_ft.backends.cuda.loading import load_tokenizer
from qmd_ft.prompt import IM_END, IM_START, render_prompt
from qmd_ft.reward import score


@pytest.fixture(scope="module")
def memorized(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return memorized_model(tmp_path_factory, tiny_model_dir)


def test_reward_scores_the_ids_as_eval_decodes_them(tiny_model_dir: Path) -> None:
    """TRL's completion text skips special tokens, which would hide a leaked `<|im_start|>`
    (a rubric failure in eval); the reward decodes TRL's ids with them kept, up to the stop."""
    tokenizer = load_tokenizer(str(tiny_model_dir))
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    good = "lex: auth config\nvec: how do I configure authentication"
    leak = "lex: auth config\n<|im_start|>assistant\nvec: how do I configure authentication"
    ids = [tokenizer(t)["input_ids"] + [im_end] for t in (good, leak)]
    trl_text = tokenizer.batch_decode(ids, skip_special_tokens=True)
    assert IM_START not in trl_text[1]
    logged: dict[str, list[str]] = {}
    reward = rubric_reward(tokenizer, {im_end})
    rewards = reward(
        [render_prompt("auth config")] * 2, trl_text, ids, log_extra=logged.__setitem__
    )
    assert rewards == [score("auth config", good).reward, 0.0] and rewards[0] > 0
    assert logged == {SCORED_TEXT: [good, leak]}
    assert reward.__name__ == "qmd_reward"  # TRL's log key: rewards/qmd_reward/mean


def test_grpo_trains_a_fresh_lora_and_logs_the_rubric_rewards(
    memorized: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = prepared(tmp_path)
    out = tmp_path / "grpo"
    cfg = make_config(
        tiny_model_dir,
        out,
        data,
        model={"sft": str(memorized)},
        training={"batch_size": 8, "learning_rate": 5e-3},
        grpo={"num_generations": 4, "max_completion_length": 64, "beta": 0.04},
    )
    assert run_grpo(TrainRequest(cfg, data, out, device="cpu", max_steps=3)) == out

    weights = load_file(out / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().max() > 0 for k, v in weights.items())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "grpo-adapter" and manifest["parents"] == [str(memorized)]

    logged = {e["step"]: e for e in log_history(out) if "reward" in e}
    assert sorted(logged) == [1, 2, 3]
    for entry in logged.values():
        for key in ("loss", "reward", "reward_std", "kl", "completions/mean_length"):
            assert math.isfinite(entry[key]), (key, entry)
    assert any(e["reward_std"] > 0 for e in logged.values())  # a learning signal existed
    assert max(e["kl"] for e in logged.values()) > 0  # the policy moved; beta pulls it back

    rows = [json.loads(line) for line in (out / COMPLETIONS_FILE).read_text().splitlines()]
    for step, entry in logged.items():
        batch = [r for r in rows if r["step"] == step]
        assert len(batch) == 8
        rescored = [score(r["query"], r["completion"]).reward for r in batch]
        assert rescored == pytest.approx([r["reward"] for r in batch], abs=1e-6)
        assert sum(rescored) / len(rescored) == pytest.approx(entry["reward"], abs=1e-6)


def test_train_all_chains_sft_adapter_into_grpo_with_chat_prompts(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    examples = write_examples(tmp_path / "raw" / "examples.jsonl")
    sft = tmp_path / "sft.yaml"
    sft.write_text(
        f"model: {{base: {tiny_model_dir}, output: {tmp_path / 'run' / 'sft'}}}\n"
        f"dataset: {{name: {tmp_path / 'data'}, data_glob: {examples}, eval_split: 0.25, "
        "evals: null}\n"
        "training: {batch_size: 4, logging_steps: 1}\n"
        "lora: {rank: 4, alpha: 8}\n"
    )
    grpo = tmp_path / "grpo.yaml"
    grpo.write_text(
        f"model: {{base: {tiny_model_dir}}}\n"
        f"dataset: {{name: {tmp_path / 'data'}, prompt_field: messages}}\n"
        "training: {batch_size: 4, logging_steps: 1}\n"
        "grpo: {num_generations: 4, max_completion_length: 16}\n"
        "lora: {rank: 4, alpha: 8, target_modules: [q_proj, v_proj]}\n"
    )
    r = subprocess.run(
        [
            sys.executable, "-m", "qmd_ft", "train", "all", "--config", str(sft),
            "--grpo-config", str(grpo), "--device", "cpu", "--max-steps", "2",
        ],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "run"
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith(f"trained sft -> {run / 'sft'} (step 2") and "; grpo -> " in last
    assert (tmp_path / "data" / "train.jsonl").is_file()  # prepared on the way
    manifest = json.loads((run / "grpo" / "manifest.json").read_text())
    assert manifest["parents"] == [str(tiny_model_dir), str(run / "sft")]
    assert manifest["config"]["model"]["sft"] == str(run / "sft")
    assert manifest["config"]["dataset"]["prompt_field"] == "messages"
    assert manifest["metrics"]["global_step"] == 2
    assert (run / "grpo" / COMPLETIONS_FILE).is_file()
