"""`qmd-ft export gguf` as one function: export, quantize, verify, Modelfile, manifest.

Full-precision and Q8_0 files are written from the safetensors weights; K-quants are made by
llama.cpp from the lossless GGUF of the source's precision (bf16 for Qwen3's bf16 weights, f32
for a float32 model), so no quantized file inherits an extra rounding step. When that lossless
file was not asked for, it is written as a temporary file and removed after quantizing.

K-quants and verification need llama-cpp-python (the optional `gguf-runtime` extra): without
it, asking for either stops before anything is written, with the one line saying how to add it.

A verification failure removes nothing: the manifest marks the file failed and the caller
exits non-zero, so the files can still be inspected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qmd_ft.gguf import K_QUANT_TYPES, WRITTEN_TYPES, file_name
from qmd_ft.gguf.export import SourceTensor, export_gguf, index_safetensors, read_config
from qmd_ft.gguf.modelfile import pick_file, write_modelfile
from qmd_ft.gguf.quantize import quantize
from qmd_ft.gguf.runtime import require_runtime_for
from qmd_ft.gguf.verify import (
    MEANINGFUL_PERCENT,
    RTOL,
    SCORE_MARGIN,
    Reference,
    Verification,
    reference,
    require_reference,
    verify_file,
)
from qmd_ft.manifest import file_sha256, write_manifest
from qmd_ft.progress import ProgressFn

EventFn = ProgressFn
"""Progress events (qmd_ft.progress): writing reports bytes; the other steps report (0, 1) when
they start, and a new description means the previous step is done."""


@dataclass
class FileResult:
    """One written GGUF file and, unless verification was skipped, how it fared."""

    gguf_type: str
    path: Path
    size: int
    sha256: str
    verification: Verification | None = None

    @property
    def status(self) -> str:
        """One of "verified", "FAILED" or "not verified" (--no-verify)."""
        if self.verification is None:
            return "not verified"
        return "verified" if self.verification.ok else "FAILED"

    def to_dict(self) -> dict[str, Any]:
        """The manifest entry: name, type, size, hash, and the verification record."""
        entry: dict[str, Any] = {
            "file": self.path.name,
            "type": self.gguf_type,
            "bytes": self.size,
            "sha256": self.sha256,
        }
        if self.verification is None:
            return {**entry, "verified": None}
        return {
            **entry,
            "tensor_types": self.verification.tensor_types,
            **self.verification.to_dict(),
        }


@dataclass
class BuildResult:
    """Everything `build` wrote."""

    out_dir: Path
    files: list[FileResult]
    modelfile: Path
    manifest: Path

    @property
    def failed(self) -> list[FileResult]:
        """Files whose verification failed."""
        return [f for f in self.files if f.status == "FAILED"]


def lossless_type(sources: list[SourceTensor]) -> str:
    """The GGUF type that holds the source matrices exactly: f32, bf16 or f16."""
    dtypes = {t.dtype for t in sources if len(t.shape) > 1}
    if "F32" in dtypes:
        return "f32"
    return "bf16" if "BF16" in dtypes else "f16"


def build(
    model_dir: Path,
    out_dir: Path,
    types: list[str],
    verify: bool = True,
    on_event: EventFn | None = None,
) -> BuildResult:
    """Write the requested GGUF types of `model_dir` into `out_dir`, verify, describe them."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    event = on_event or (lambda what, done, total: None)
    read_config(model_dir)
    require_runtime_for(types, verify)  # fail before minutes of writing, not after
    if verify:
        require_reference()
    sources = index_safetensors(model_dir)
    name = model_dir.resolve().name
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {t: out_dir / file_name(name, t) for t in types}

    quants = [t for t in types if t in K_QUANT_TYPES]
    base = lossless_type(sources)
    base_path = paths.get(base) or out_dir / f".{file_name(name, base)}.for-quantizing"
    writes = [t for t in types if t in WRITTEN_TYPES]
    if quants and base not in writes:
        writes.append(base)
    try:
        for kind in writes:
            target = paths.get(kind, base_path)
            label = f"writing {target.name}"
            export_gguf(model_dir, target, kind, lambda done, total, s=label: event(s, done, total))
        for kind in quants:
            event(f"quantizing {paths[kind].name}", 0, 1)
            quantize(base_path, paths[kind], kind)
    finally:
        if base not in types:
            base_path.unlink(missing_ok=True)

    results = []
    for kind in types:
        event(f"hashing {paths[kind].name}", 0, 1)
        path = paths[kind]
        results.append(FileResult(kind, path, path.stat().st_size, file_sha256(path)))

    ref = None
    if verify:
        event("transformers reference (float32)", 0, 1)
        ref = reference(model_dir)
        for result in results:
            event(f"verifying {result.path.name}", 0, 1)
            result.verification = verify_file(result.path, result.gguf_type, ref)

    usable = {r.gguf_type: r.path.name for r in results if r.status != "FAILED"}
    chosen = pick_file(usable or {r.gguf_type: r.path.name for r in results})
    modelfile = write_modelfile(out_dir, chosen)
    manifest = write_manifest(
        out_dir,
        "gguf",
        parents=[str(model_dir.resolve())],
        extra={
            "model_name": name,
            "files": [r.to_dict() for r in results],
            "modelfile": {"file": modelfile.name, "from": chosen},
            "verification": _verification_settings(ref),
        },
    )
    return BuildResult(out_dir, results, modelfile, manifest)


def _verification_settings(ref: Reference | None) -> dict[str, Any] | None:
    """What the files were checked against, for the manifest (None: not verified)."""
    if ref is None:
        return None
    return {
        "query": ref.query,
        "generation_limit": ref.max_new_tokens,
        "reference": "transformers float32 greedy",
        "reference_completion": ref.text,
        "reference_score": ref.score,
        "logit_rtol": RTOL,
        "meaningful_from_percent": MEANINGFUL_PERCENT,
        "score_margin_points": SCORE_MARGIN,
    }
