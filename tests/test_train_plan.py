"""`qmd_ft.train`'s plan: one `--set [stage:]key=value` syntax, chaining, and the config rules
checked for the stage a config drives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qmd_ft.cli import app
from qmd_ft.config import check_grpo_batch, load_config, split_overrides
from qmd_ft.errors import UserError
from qmd_ft.train.plan import plan_stages

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"sft": ROOT / "configs/sft.yaml", "grpo": ROOT / "configs/grpo.yaml"}


def test_bare_set_reaches_both_stages_and_a_prefix_one() -> None:
    sft, grpo = plan_stages(
        ("sft", "grpo"),
        CONFIGS,
        ["training.max_steps=9", "sft:training.learning_rate=0.001", "grpo:grpo.beta=0.2"],
    )
    assert (sft.stage, grpo.stage) == ("sft", "grpo")
    assert sft.config.training.max_steps == grpo.config.training.max_steps == 9
    assert sft.config.training.learning_rate == 0.001
    assert grpo.config.training.learning_rate == 5e-7  # configs/grpo.yaml's own
    assert grpo.config.grpo.beta == 0.2 and sft.config.grpo.beta == 0.04


def test_chaining_wins_over_bare_set_and_a_grpo_item_wins_over_chaining(tmp_path: Path) -> None:
    out = tmp_path / "a" / "sft"
    sft, grpo = plan_stages(("sft", "grpo"), CONFIGS, [f"model.output={out}"])
    assert sft.config.model.output == str(out)
    assert grpo.config.model.sft == str(out)  # GRPO starts from this run's SFT...
    assert grpo.config.model.output == str(tmp_path / "a" / "grpo")  # ...and writes beside it
    elsewhere = tmp_path / "b"
    _, grpo = plan_stages(("sft", "grpo"), CONFIGS, [f"grpo:model.output={elsewhere}"])
    assert grpo.config.model.output == str(elsewhere)
    _, grpo = plan_stages(("sft", "grpo"), CONFIGS, [], outputs={"grpo": elsewhere / "g"})
    assert grpo.config.model.output == str(elsewhere / "g")


def test_a_value_with_a_colon_is_not_a_stage_prefix() -> None:
    split = split_overrides(["model.base=hf:org/model", "sft:a.b=c:d"], ("sft",))
    assert split.common == ["model.base=hf:org/model"]
    assert split.of("sft") == ["model.base=hf:org/model", "a.b=c:d"]


@pytest.mark.parametrize(
    ("item", "stages", "needle"),
    [
        ("grpo:grpo.beta=0.1", ("sft",), "--set 'grpo:grpo.beta=0.1': this command runs no grpo"),
        ("sft:x=1", ("grpo",), "runs no sft stage (it loads: grpo)"),
        ("eval:x=1", ("sft", "grpo"), "unknown stage 'eval'"),
    ],
)
def test_a_prefix_the_command_does_not_run_is_an_error(
    item: str, stages: tuple[str, ...], needle: str
) -> None:
    with pytest.raises(UserError) as e:
        split_overrides([item], stages)
    assert needle in str(e.value)


def test_cli_bad_prefix_is_one_line_and_grpo_set_is_a_hidden_alias(tmp_path: Path) -> None:
    for flags in (["--set", "grpo:grpo.beta=0.1"], ["--grpo-set", "grpo.beta=0.1"]):
        r = subprocess.run(
            [sys.executable, "-m", "qmd_ft", "train", "sft", "--dry-run", *flags],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert r.returncode == 1, r.stdout + r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert "--set 'grpo:grpo.beta=0.1': this command runs no grpo stage" in r.stderr
    helped = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    assert "--set" in helped and "--grpo-set" not in helped


def test_grpo_set_means_set_grpo_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both spellings reach plan_stages as the same `grpo:` item."""
    from qmd_ft.cli import train_cmd

    seen: list[list[str]] = []

    def plan(stages, configs, overrides, **kwargs):
        seen.append(list(overrides))
        raise UserError("stop")

    monkeypatch.setattr(train_cmd, "plan_stages", plan)
    runner = CliRunner()
    runner.invoke(app, ["train", "all", "--backend", "cuda", "--set", "grpo:lora.rank=2"])
    runner.invoke(app, ["train", "all", "--backend", "cuda", "--grpo-set", "lora.rank=2"])
    assert seen == [["grpo:lora.rank=2"], ["grpo:lora.rank=2"]]


def test_grpo_batch_rule_is_a_config_validator_naming_the_keys() -> None:
    items = ["training.batch_size=3", "training.gradient_accumulation_steps=1"]
    with pytest.raises(UserError) as e:
        load_config(CONFIGS["grpo"], items, stage="grpo")
    line = str(e.value)
    assert line.startswith(f"{CONFIGS['grpo']} (with --set overrides): training.batch_size (3)")
    for key in ("training.gradient_accumulation_steps (1)", "grpo.num_generations (4)"):
        assert key in line
    assert "training.gradient_accumulation_steps: 4" in line  # the fix
    assert "<root>" not in line and "Value error" not in line
    # An SFT config never generates: the same values are fine there.
    assert load_config(CONFIGS["sft"], items, stage="sft").training.batch_size == 3
    # The world size counts: 2 processes x 2 completions make whole groups of 4.
    two = ["training.batch_size=2", "training.gradient_accumulation_steps=1"]
    with pytest.raises(UserError):
        load_config(CONFIGS["grpo"], two, stage="grpo")
    cfg = load_config(CONFIGS["grpo"], two, stage="grpo", processes=2)
    assert check_grpo_batch(cfg, 2) == 4
    with pytest.raises(UserError, match="processes \\(1\\)"):
        check_grpo_batch(cfg, 1)
