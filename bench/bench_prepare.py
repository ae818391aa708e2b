"""Benchmark: `prepare` on 100,000 rows (the data toolkit's stated bound is 30 s).

Writes 100k synthetic full examples (5 files of 20k) to a temp dir, then times `prepare`
(validate, normalize, dedupe, eval exclusion, split, render, write). Run:
    .venv/bin/python bench/bench_prepare.py [--rows N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from qmd_ft.data.prepare import prepare

OUTPUT = (
    "hyde: Docker volumes keep container data on the host so it survives restarts and rebuilds.\n"
    "lex: docker volume mount {i}\nlex: docker named volumes persistence {i}\n"
    "vec: how do docker volumes persist container data number {i}\n"
    "vec: what is the difference between bind mounts and named volumes {i}"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = []
        per_file = args.rows // 5
        for f in range(5):
            path = root / f"part{f}.jsonl"
            with path.open("w") as out:
                for j in range(per_file):
                    i = f * per_file + j
                    rec = {"input": f"query number {i} about docker", "output": OUTPUT.format(i=i)}
                    out.write(json.dumps(rec) + "\n")
            files.append(path)
        evals = root / "queries.txt"
        evals.write_text("# T\nquery number 7 about docker\n")
        start = time.perf_counter()
        info = prepare(files, root / "out", evals).info
        seconds = time.perf_counter() - start
        c = info["counts"]
        print(
            f"prepare: {c['rows_read']} rows in {seconds:.1f} s "
            f"({c['rows_read'] / seconds:,.0f} rows/s); train {c['train']}, val {c['val']}, "
            f"excluded {c['eval_queries_excluded']}"
        )


if __name__ == "__main__":
    main()
