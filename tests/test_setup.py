"""Set-up as users' machines have it: the universal lock and the installable package.

The lock tests ask PyPI (through uv) for metadata only; they are marked `network`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")

needs_uv = pytest.mark.skipif(UV is None, reason="uv is not installed (make setup installs it)")


def _pins(text: str) -> list[str]:
    """The requirement lines (name==version ; markers), without hashes or comments."""
    return [line.rstrip(" \\") for line in text.splitlines() if re.match(r"^[A-Za-z0-9]", line)]


def test_lock_is_hashed_universal_and_names_no_host() -> None:
    text = LOCK.read_text(encoding="utf-8")
    pins = _pins(text)
    assert len(pins) > 50
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    assert all("--hash=sha256:" in b for b in blocks if re.match(r"^[A-Za-z0-9]", b)), (
        "every pin carries hashes"
    )
    assert "+cpu" not in text
    assert not re.search(r"https?://|--index-url|--find-links|file:", text)
    names = {p.split("==")[0].lower() for p in pins}
    # macOS gets the Metal build of mlx, Linux the CPU one; torch is PyPI's (CUDA on Linux).
    assert {"torch", "mlx", "mlx-metal", "mlx-cpu", "uv"} <= names
    assert "sentence-transformers" not in names  # excluded by [tool.uv], not a second lock
    metal = next(p for p in pins if p.startswith("mlx-metal=="))
    assert "darwin" in metal and "linux" not in metal


@needs_uv
@pytest.mark.network
def test_lock_matches_pyproject(tmp_path: Path) -> None:
    """`make lock` would write the same pins: pyproject changed means the lock must too."""
    out = tmp_path / "requirements.lock"
    shutil.copy(LOCK, out)  # uv keeps the pins of an existing output file where they still fit
    cmd = [UV, "pip", "compile", "pyproject.toml", "--extra", "all", "--universal"]
    cmd += ["--generate-hashes", "--python-version", "3.11", "-q", "-o", str(out)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    assert _pins(out.read_text(encoding="utf-8")) == _pins(LOCK.read_text(encoding="utf-8"))


@needs_uv
@pytest.mark.network
@pytest.mark.parametrize(
    ("platform", "python"),
    [
        ("aarch64-apple-darwin", "3.11"),
        ("aarch64-apple-darwin", "3.13"),
        ("x86_64-manylinux_2_35", "3.11"),
        ("x86_64-manylinux_2_35", "3.13"),
        ("aarch64-manylinux_2_35", "3.12"),
    ],
)
def test_lock_pins_resolve_on_users_platforms(platform: str, python: str, tmp_path: Path) -> None:
    """Every pin has a wheel (or sdist) for Apple Silicon on macOS 14 and for Linux."""
    cmd = [UV, "pip", "compile", str(LOCK), "--python-platform", platform]
    cmd += ["--python-version", python, "--no-header", "-q", "-o", str(tmp_path / "out.txt")]
    env = os.environ | {"MACOSX_DEPLOYMENT_TARGET": "14.0"}
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    resolved = _pins((tmp_path / "out.txt").read_text(encoding="utf-8"))
    expected = "mlx-metal" if "darwin" in platform else "mlx-cpu"
    assert any(p.startswith(("torch==", f"{expected}==")) for p in resolved)
    assert any(p.startswith(f"{expected}==") for p in resolved)


def test_every_package_in_the_tree_is_in_the_wheel() -> None:
    """pyproject lists packages by hand (the folders are mapped): none may be forgotten."""
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.relative_to(ROOT).parent.parts) for p in (ROOT / "qmd_ft").rglob("__init__.py")
    }
    found |= {
        ".".join(("qmd_ft", *p.relative_to(ROOT).parent.parts))
        for p in (ROOT / "backends").rglob("__init__.py")
    }
    assert found <= listed, f"missing from [tool.setuptools] packages: {sorted(found - listed)}"


@needs_uv
@pytest.mark.slow
def test_built_wheel_runs_from_any_directory(tmp_path: Path) -> None:
    """`pip install .` gives a working tool: the packaged demo config, data and eval sets."""
    # Build from a copy of the tree git knows (setuptools would reuse a stale ./build).
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    src = tmp_path / "src"
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    dist = tmp_path / "dist"
    build = [UV, "build", "--wheel", "--no-build-isolation", "-q", "-o", str(dist), str(src)]
    subprocess.run(build, check=True, capture_output=True, text=True)
    wheel = next(dist.glob("qmd_ft-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run(
        [UV, "pip", "install", "-q", "--python", str(py), "--no-deps", str(wheel)], check=True
    )
    # The third-party packages come from this environment, by path only: its .pth files (the
    # editable install of the checkout) are not read, so qmd_ft can only be the wheel's.
    site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    away = tmp_path / "elsewhere"
    away.mkdir()

    def qmd_ft(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(venv / "bin" / "qmd-ft"), *args], cwd=away, capture_output=True, text=True
        )

    where = subprocess.run(
        [
            str(py),
            "-c",
            "import qmd_ft, qmd_ft.backends.cuda as c; print(qmd_ft.__file__, c.__file__)",
        ],
        cwd=away,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(ROOT) not in where and str(venv) in where
    assert qmd_ft("demo", "--help").returncode == 0
    shown = qmd_ft("config", "show", "configs/demo/pipeline.yaml")
    assert shown.returncode == 0, shown.stderr
    assert "_defaults" in shown.stdout  # the demo's data and eval set resolve to the shipped copy
    tiny = qmd_ft("make-tiny-model", "tiny")
    assert tiny.returncode == 0, tiny.stderr
    assert (away / "tiny" / "config.json").is_file()


def test_shipped_defaults_never_mix_with_a_users_folder(tmp_path: Path, monkeypatch) -> None:
    """Outside a project the shipped copy is read; a folder the user has is theirs alone."""
    from qmd_ft.resources import defaults_root, locate, locate_glob

    monkeypatch.chdir(tmp_path)
    assert locate("evals/queries.txt") == defaults_root() / "evals/queries.txt"
    assert locate_glob("data/*.jsonl") == str(defaults_root() / "data/*.jsonl")
    assert locate("outputs/x.json") == Path("outputs/x.json")  # not a default folder
    (tmp_path / "evals").mkdir()
    (tmp_path / "data").mkdir()
    assert locate("evals/queries.txt") == Path("evals/queries.txt")  # missing: stays an error
    assert locate_glob("data/*.jsonl") == "data/*.jsonl"
