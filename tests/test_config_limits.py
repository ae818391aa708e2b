"""Hostile configs: each is refused in one short line naming the file, never hangs or overflows."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from qmd_ft.config import MAX_CONFIG_BYTES, load_config
from qmd_ft.errors import UserError


def bomb(levels: int = 12) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nlora:\n  target_modules: *a{levels - 1}\n"


CASES = {
    "inf learning rate": ("training:\n  learning_rate: .inf\n", "finite number"),
    "nan beta": ("grpo:\n  beta: .nan\n", "finite number"),
    "-inf min_delta": ("publish:\n  min_delta: -.inf\n", "finite number"),
    "deep nesting": ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper"),
    "deep mapping": ("".join(f"{' ' * i}k{i}:\n" for i in range(200)), "nested deeper"),
    "alias bomb": (bomb(), "aliases"),
    "recursive alias": ("lora:\n  target_modules: &a [*a]\n", "refers to itself"),
    "huge integer": ("training:\n  batch_size: " + "9" * 5000 + "\n", "cannot be read"),
    "absurd batch": ("training:\n  batch_size: 100000000000000\n", "less than or equal"),
    "negative seed": ("training:\n  seed: -1\n", "greater than or equal"),
    "huge string": ("model:\n  base: [" + "x" * 500_000 + "]\n", "Input should be a valid"),
}


@pytest.mark.parametrize("name", CASES)
def test_hostile_config_is_one_short_line(tmp_path: Path, name: str) -> None:
    text, expected = CASES[name]
    path = tmp_path / "c.yaml"
    path.write_text(text)
    start = time.perf_counter()
    with pytest.raises(UserError) as err:
        load_config(path)
    assert time.perf_counter() - start < 5
    line = str(err.value)
    assert expected in line and str(path) in line
    assert "\n" not in line and len(line) < 400, line


def test_oversized_config_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * MAX_CONFIG_BYTES + "\n")
    with pytest.raises(UserError, match="a config is at most"):
        load_config(path)


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        ("training.batch_size=[1", "invalid YAML value"),
        ("training.learning_rate=.inf", "finite number"),
        ("training.learning_rate=nan", "finite number"),
        ("model.base=" + "[" * 1000, "nested deeper"),
        ("x" * 10_000, "expected key.path=value"),
    ],
)
def test_hostile_set_values_are_one_short_line(pair: str, expected: str) -> None:
    with pytest.raises(UserError) as err:
        load_config(None, [pair])
    assert expected in str(err.value) and len(str(err.value)) < 400, str(err.value)


def test_shipped_configs_still_load(repo_root: Path) -> None:
    for path in sorted((repo_root / "configs").rglob("*.yaml")):
        load_config(path)
