"""What a job needs from this machine: the files its command reads, at their project paths.

The job runs the very command typed here, in a work dir that mirrors the project (the current
directory): every path named on the command line or in the config that exists here is uploaded
at the same relative path, so relative paths need no rewriting and the config file travels
byte for byte. Only paths outside the project (absolute, or climbing out with `..`) move, under
`_external/<hash>/<name>`, and the command is rewritten to match (config values by appending
`--set key=…`). Outputs need nothing here: the job uploads every file the command created or
changed, wherever the command wrote it inside the work dir.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qmd_ft.config import load_config
from qmd_ft.errors import UserError
from qmd_ft.resources import defaults_root

JOB_FLAGS = ("--hf-jobs",)
JOB_OPTIONS = ("--flavor", "--timeout", "--namespace", "--resume-from")
"""Options that choose where the command runs; the job's own command must not carry them."""

OUTPUT_KEYS = ("model.output", "export.out", "pipeline.out", "publish.registry")
"""Config paths the command writes: not uploaded (they can be large), except with --resume."""

EXTERNAL = "_external"
SKIPPED_DIRS = ("__pycache__", ".git")


def local_command(argv: list[str]) -> list[str]:
    """`argv` without the job options, so the job runs the command itself, not another job."""
    out: list[str] = []
    skip_value = False
    for tok in argv:
        if skip_value:
            skip_value = False
        elif tok in JOB_FLAGS or ("=" in tok and tok.partition("=")[0] in JOB_OPTIONS):
            continue
        elif tok in JOB_OPTIONS:
            skip_value = True
        else:
            out.append(tok)
    return out


@dataclass
class JobInputs:
    """The command the job runs and the files it reads: {path in the work dir: local file}."""

    command: list[str]
    files: dict[str, Path] = field(default_factory=dict)


class _PathMapper:
    """Maps each path-like value to its place in the job's work dir, collecting files to upload."""

    def __init__(self, root: Path):
        self.root = root
        self.files: dict[str, Path] = {}

    def map(self, value: str, upload: bool = True) -> str:
        """The value the job should see; existing paths (and glob matches) are collected.

        A glob (`data/*.jsonl`) stays as typed and its matches inside the project travel;
        matches outside it cannot be mirrored and are left out.
        """
        if not value or value.startswith("-"):
            return value
        if any(c in value for c in "*?"):
            for match in sorted(glob.glob(value, root_dir=self.root, recursive=True)):
                full = Path(os.path.normpath(self.root / match))
                if upload and full.is_relative_to(self.root):
                    self._add(full, full.relative_to(self.root).as_posix())
            return value
        full = Path(os.path.normpath(self.root / value))
        inside = full.is_relative_to(self.root)
        if inside and not os.path.isabs(value) and not os.path.exists(full):
            return value  # a hub id, a plain word, or an output the job will create
        if full == self.root:
            raise UserError(f"{value!r} is the whole project dir: name the files the job needs")
        if inside:
            rel = full.relative_to(self.root).as_posix()
        else:
            digest = hashlib.sha256(str(full).encode()).hexdigest()[:8]
            rel = f"{EXTERNAL}/{digest}/{full.name}"
        if upload and os.path.exists(full):
            self._add(full, rel)
        return value if inside and not os.path.isabs(value) else rel

    def _add(self, path: Path, rel: str) -> None:
        if path.is_file():
            self.files[Path(rel).as_posix()] = path
            return
        for f in sorted(path.rglob("*")):
            if f.is_file() and not any(p in SKIPPED_DIRS for p in f.relative_to(path).parts):
                self.files[f"{Path(rel).as_posix()}/{f.relative_to(path).as_posix()}"] = f


def _set_values(command: list[str]) -> list[str]:
    """The `key=value` pairs of every `--set` in the command, in order."""
    pairs = []
    for i, tok in enumerate(command):
        if tok == "--set" and i + 1 < len(command):
            pairs.append(command[i + 1])
        elif tok.startswith("--set="):
            pairs.append(tok.removeprefix("--set="))
    return pairs


def _leaves(node: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _map_token(mapper: _PathMapper, tok: str) -> str:
    """A token, `--option=value` or `key=value` (a `--set` pair) with its path part mapped."""
    name, eq, value = tok.partition("=")
    if not eq or os.path.exists(mapper.root / tok):
        return mapper.map(tok)
    if name == "--set":
        return f"{name}={_map_token(mapper, value)}"
    if name.startswith("-") or "/" not in name:
        return f"{name}={mapper.map(value)}"
    return mapper.map(tok)


def _shipped(value: str, project: Path) -> bool:
    """Whether `value` is a shipped default the config resolved (outside the project)."""
    path = Path(value)
    root = defaults_root().resolve()
    return path.is_absolute() and path.is_relative_to(root) and not path.is_relative_to(project)


def job_inputs(argv: list[str], config_path: Path | None) -> JobInputs:
    """Plan a job for `qmd-ft <argv>` as typed in the current directory (the project)."""
    mapper = _PathMapper(Path.cwd())
    command = [_map_token(mapper, tok) for tok in local_command(argv)]
    if config_path is not None:
        mapper.map(str(config_path))  # also when --config was left at its default
        cfg = load_config(config_path, _set_values(command))
        upload_outputs = "--resume" in command
        for key, value in _leaves(cfg.model_dump(mode="json")):
            upload = upload_outputs or key not in OUTPUT_KEYS
            if isinstance(value, str) and _shipped(value, mapper.root):
                continue  # a default qmd-ft ships: the job's wheel has it at the same place
            if isinstance(value, str):
                moved: Any = mapper.map(value, upload)
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                moved = [mapper.map(v, upload) for v in value]
            else:
                continue
            if moved != value:
                command += ["--set", f"{key}={json.dumps(moved)}"]
    return JobInputs(command=command, files=mapper.files)
