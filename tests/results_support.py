"""Results documents made by the real producers with fake generators, for the format tests.

`write_all(folder, work)` writes a greedy eval, a sampled (served) eval, a re-scored eval and
a sampled and a greedy retrieval eval as `eval -o`, `eval --serving -o`, `score --results
--json` and `eval --retrieval [--serving] -o` would. The files under tests/fixtures/results/
were written by this module on main d40be3d, before results became pydantic models, so the
tests can check that today's code reads them losslessly and writes the same keys and values
(`.venv/bin/python -m tests.results_support tests/fixtures/results` rewrites them).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
QUERIES = "# Technical\ndocker volumes\nrust lifetimes\n# Short\nx\n"
RETRIEVAL_IDS = ("vm01", "nl05", "kw03")
GOOD = (
    "hyde: Docker volumes keep container data on the host so it survives restarts and rebuilds.\n"
    "lex: docker volume mount\nlex: docker named volumes persistence\n"
    "vec: how do docker volumes persist container data\n"
    "vec: what is the difference between bind mounts and named volumes"
)
VOLATILE = ("timestamp", "seconds", "versions", "timings", "sha256", "queries_file")
"""Keys whose values depend on the run (clock, installed packages, file hashes of tmp paths)."""


class SeededFake:
    """A backend whose generator writes a good expansion for seed 0 and poorer ones otherwise."""

    def generator(self, model, adapters, gen, device=None):
        outs = [GOOD, "<think>hm</think>\nlex: x\nvec: y", "lex: only keywords"]
        return lambda prompts: [outs[(gen.seed + i) % 3] for i in range(len(prompts))]


class WordEmbedder:
    """Bag-of-words vectors: a fast, deterministic stand-in for MiniLM."""

    vocabulary = ("docker", "rust", "meeting", "recipe", "travel", "project", "note", "the")

    def encode(self, texts: Sequence[str]):
        import numpy as np

        rows = np.zeros((len(texts), len(self.vocabulary)), dtype=np.float32)
        for i, text in enumerate(texts):
            words = set(re.findall(r"\w+", text.lower()))
            rows[i] = [w in words for w in self.vocabulary]
            rows[i, -1] += 0.5
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@contextmanager
def fake_backend() -> Iterator[None]:
    with mock.patch("qmd_ft.backend.get_backend", lambda name="auto": SeededFake()):
        yield


def small_eval_dir(folder: Path) -> Path:
    """The shipped retrieval corpus cut to a few judged queries and their notes."""
    from retrieval_support import cut_eval_dir

    return cut_eval_dir(folder, RETRIEVAL_IDS, every=40)


def write_all(folder: Path, work: Path) -> dict[str, Path]:
    """Every kind of results file, written by the producers into `folder` (inputs in `work`)."""
    from qmd_ft.config import EvalConfig, ServingConfig
    from qmd_ft.evaluation import load_results, rescore, run_eval, run_sampled_eval, write_results
    from qmd_ft.retrieval.cli_eval import retrieval_eval
    from qmd_ft.retrieval.run import build_indexes

    folder.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    qfile = work / "queries.txt"
    qfile.write_text(QUERIES, encoding="utf-8")
    gen = EvalConfig(batch_size=2)
    serving = ServingConfig(enabled=True, samples=3)
    names = ("greedy", "sampled", "rescored", "retrieval", "retrieval_greedy")
    out = {name: folder / f"{name}.json" for name in names}
    with fake_backend():
        write_results(run_eval("m", ["a"], qfile, gen, backend="cuda"), out["greedy"])
        sampled = run_sampled_eval("m.gguf", qfile, gen, serving, backend="gguf")
        write_results(sampled, out["sampled"])
        write_results(rescore(load_results(out["greedy"])), out["rescored"])
        eval_dir = small_eval_dir(work / "retrieval")
        indexes = build_indexes(eval_dir / "notes", WordEmbedder())  # type: ignore[arg-type]
        found = retrieval_eval(
            "m.gguf",
            [],
            gen,
            backend="gguf",
            eval_dir=eval_dir,
            indexes=indexes,
            serving=serving,
        )
        write_results(found, out["retrieval"])
        found = retrieval_eval("m", ["a"], gen, backend="cuda", eval_dir=eval_dir, indexes=indexes)
        write_results(found, out["retrieval_greedy"])
    return out


def masked(node: object) -> object:
    """A JSON value with every volatile value replaced by its type's name."""
    if isinstance(node, dict):
        return {
            k: type(v).__name__ if any(w in k for w in VOLATILE) else masked(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [masked(v) for v in node]
    return node


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for path in write_all(Path(sys.argv[1]), Path(tmp)).values():
            print(path)
