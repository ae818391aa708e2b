"""`manifest.json` beside every artifact: what made it, so any result can be reproduced.

Records the command, resolved config, data hash, parent artifacts, package versions and the
git commit. Never records secrets: the environment is not copied, and values of keys that look
like credentials are refused.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from qmd_ft import __version__

MANIFEST = "manifest.json"
PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "datasets",
    "accelerate",
    "mlx",
    "mlx-lm",
    "gguf",
    "llama-cpp-python",
    "huggingface_hub",
)
SECRET_SUFFIXES = ("token", "secret", "password", "api_key")
"""A key that is or ends in one of these names a credential (`hf_token`, not `max_new_tokens`)."""


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide numerics and formats."""
    out = {"qmd-ft": __version__, "python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit(cwd: Path | None = None) -> str | None:
    """HEAD of the working tree, with `-dirty` when it has uncommitted changes."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("-dirty" if dirty else "")


def file_sha256(path: Path) -> str:
    """Streamed sha256 of one file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dir_sha256(path: Path) -> str:
    """sha256 over a directory's relative file names and contents (manifest excluded)."""
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file() and q.name != MANIFEST):
        h.update(str(p.relative_to(path)).encode() + b"\0" + file_sha256(p).encode())
    return h.hexdigest()


def _check_no_secrets(obj: Any, where: str = "") -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if str(k).lower().endswith(SECRET_SUFFIXES) and v:
                raise ValueError(f"refusing to write a secret-like key into a manifest: {where}{k}")
            _check_no_secrets(v, f"{where}{k}.")
    elif isinstance(obj, list):
        for v in obj:
            _check_no_secrets(v, where)


def write_manifest(
    out_dir: Path,
    kind: str,
    *,
    config: dict | None = None,
    data_hash: str | None = None,
    parents: list[str] | None = None,
    extra: dict | None = None,
) -> Path:
    """Write `out_dir/manifest.json` describing the artifact; returns its path."""
    record = {
        "kind": kind,
        "command": " ".join(sys.argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config,
        "data_sha256": data_hash,
        "parents": parents or [],
        "versions": package_versions(),
        "git_commit": git_commit(Path(__file__).resolve().parent),
        **(extra or {}),
    }
    _check_no_secrets(record)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MANIFEST
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_manifest(out_dir: Path) -> dict | None:
    """The manifest of an artifact directory, or None when it has none."""
    path = out_dir / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def origin_model(ref: str, depth: int = 8) -> str:
    """The model a local artifact was trained from, followed back through manifests.

    A merged or fully fine-tuned directory names its own base; the chain ends at a hub id (or a
    directory without a manifest), which is what a model card's `base_model` must name.
    """
    for _ in range(depth):
        manifest = read_manifest(Path(ref)) if Path(ref).is_dir() else None
        if not manifest:
            break
        base = manifest.get("base_model") or ((manifest.get("config") or {}).get("model") or {})
        base = base if isinstance(base, str) else base.get("base")
        if not base or base == ref:
            break
        ref = base
    return ref


def lineage(base: str, adapters: list[str]) -> dict[str, Any]:
    """What a merged model is made of: its origin model and, per adapter in merge order, the
    stage's kind, data hash and training/LoRA (and GRPO) settings from the adapter's manifest.

    The merged manifest carries this so the model card can say how the weights were trained
    without the adapter directories at hand.
    """
    stages = []
    for adapter in adapters:
        manifest = read_manifest(Path(adapter)) or {}
        kind = manifest.get("kind") or "adapter"
        config = manifest.get("config") or {}
        keys = ("training", "lora", "grpo") if kind.startswith("grpo") else ("training", "lora")
        stages.append(
            {
                "adapter": adapter,
                "kind": kind,
                "data_sha256": manifest.get("data_sha256"),
                **{k: config[k] for k in keys if config.get(k) is not None},
            }
        )
    return {"base_model": origin_model(base), "stages": stages}
