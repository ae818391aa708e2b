"""The script a job runs: install the shipped code, run the command, keep its outputs.

A PEP 723 file that needs only huggingface_hub. In order, it:
1. fails within seconds when a GPU flavor shows fewer CUDA devices than it promises (rather
   than training on the CPU until the timeout);
2. downloads the run's inputs and code (the wheel and requirements.lock) at a pinned commit,
   and, for a resumed run, the outputs the earlier run uploaded;
3. installs the lock (every hash checked) and then the wheel, into a fresh venv;
4. runs `qmd-ft COMMAND` in the work dir, committing every file the command created or changed
   to `FOLDER/outputs/` every SYNC_SECONDS while it runs, once more when it ends, and once
   more on SIGTERM (a timeout or `jobs cancel`), so checkpoints survive the job.
It holds no secret: huggingface_hub reads the token from the HF_TOKEN environment variable.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from qmd_ft import __version__
from qmd_ft.gguf.runtime import SAFE_CMAKE_ARGS

SCRIPT_NAME = "job.py"
WORK_DIR = "qmd-ft-job"
HUB_REQUIREMENT = "huggingface_hub>=1.21"
"""The first release whose Jobs API takes labels (and `list_jobs` filters by them)."""

_BODY = '''

def gpus_seen() -> int:
    """CUDA devices nvidia-smi lists (0 without a driver)."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.stdout.splitlines())


def install(base: Path) -> Path:
    """A venv with the lock's pins (hash-checked), then the shipped wheel; its python."""
    code = base / FOLDER / "code"
    env = base / ".venv"
    subprocess.run(["uv", "venv", "--quiet", "--python", sys.executable, str(env)], check=True)
    python = env / "bin" / "python"
    pip = ["uv", "pip", "install", "--quiet", "--python", str(python)]
    subprocess.run([*pip, "--require-hashes", "-r", str(code / LOCK)], check=True)
    subprocess.run([*pip, "--no-deps", str(code / WHEEL)], check=True)
    if EXTRAS:  # e.g. llama-cpp-python, which has no wheel and so no place in the lock
        env_vars = os.environ | {"CMAKE_ARGS": os.environ.get("CMAKE_ARGS", SAFE_CMAKE_ARGS)}
        subprocess.run([*pip, *EXTRAS], check=True, env=env_vars)
    return python


def files(root: Path) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file under root: what the command wrote shows up as a change."""
    out = {}
    for path in root.rglob("*"):
        if path.is_file():
            st = path.stat()
            out[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


class Outputs:
    """Commits what the command created or changed to FOLDER/outputs/, a little at a time."""

    def __init__(self, work: Path, before: dict[str, tuple[int, int]]):
        self.work, self.before, self.sent = work, before, {}
        self.lock = threading.Lock()

    def sync(self, why: str, settled: float = 0.0) -> None:
        """Commit the changes since the last sync; with `settled`, only files that have not
        changed for that many seconds (a checkpoint still being written waits its turn)."""
        with self.lock:
            now = time.time_ns()
            changed = {
                p: sig for p, sig in files(self.work).items()
                if self.before.get(p) != sig and self.sent.get(p) != sig
                and now - sig[1] >= settled * 1e9
            }
            if not changed:
                return
            HfApi().create_commit(
                REPO, repo_type="dataset", commit_message=f"{FOLDER}: outputs ({why})",
                operations=[CommitOperationAdd(f"{FOLDER}/outputs/{p}", str(self.work / p))
                            for p in sorted(changed)],
            )
            self.sent |= changed
            print(f"uploaded {len(changed)} file(s) to {REPO}: {FOLDER}/outputs/ ({why})",
                  flush=True)

    def every(self, seconds: float, stop: threading.Event) -> None:
        while not stop.wait(seconds):
            try:
                self.sync("periodic", settled=min(seconds, 30))
            except Exception as e:  # a failed periodic commit is retried at the next one
                print(f"periodic upload failed, will retry: {e}", flush=True)


def main() -> int:
    """Check the GPUs, download, install, run the command while its outputs are committed."""
    if GPUS and gpus_seen() < GPUS:
        print(f"error: flavor {FLAVOR} promises {GPUS} GPU(s) but nvidia-smi shows "
              f"{gpus_seen()}: CUDA did not start; submit the job again", flush=True)
        return 1
    base = Path(WORK_DIR).resolve()
    patterns = [f"{FOLDER}/inputs/*", f"{FOLDER}/code/*"]
    snapshot_download(REPO, repo_type="dataset", revision=REVISION, local_dir=base,
                      allow_patterns=patterns)
    work = base / FOLDER / "inputs"
    work.mkdir(parents=True, exist_ok=True)
    before = files(work)
    if RESUME:  # the earlier run's outputs, at the paths its command wrote them to
        snapshot_download(REPO, repo_type="dataset", local_dir=base,
                          allow_patterns=[f"{RESUME}/outputs/*"])
        shutil.copytree(base / RESUME / "outputs", work, dirs_exist_ok=True)
        print(f"resuming from the outputs of {RESUME}", flush=True)
    python = install(base)
    where = subprocess.run([str(python), "-c", "import qmd_ft; print(qmd_ft.__file__)"],
                           capture_output=True, text=True).stdout.strip()
    print(f"qmd-ft from the shipped wheel: {where}", flush=True)
    outputs = Outputs(work, before)
    print(f"$ qmd-ft {shlex.join(COMMAND)}", flush=True)
    proc = subprocess.Popen([str(python), "-m", "qmd_ft", *COMMAND], cwd=work)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    stop = threading.Event()
    syncer = threading.Thread(target=outputs.every, args=(SYNC_SECONDS, stop), daemon=True)
    syncer.start()
    code = proc.wait()
    stop.set()
    syncer.join()
    code = code if code >= 0 else 128 - code  # killed by a signal: 128 + its number
    outputs.sync(f"exit {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
'''


def render_script(
    *,
    repo: str,
    folder: str,
    revision: str,
    command: list[str],
    wheel: str,
    lock: str,
    flavor: str,
    gpus: int,
    resume: str | None = None,
    sync_seconds: float = 300,
    extras: Sequence[str] = (),
) -> str:
    """The job script: inline metadata, constants, then the fixed `_BODY`.

    Values are written as JSON literals (valid TOML and Python), so no argument can break out
    of its string.
    """
    constants = {
        "REPO": repo, "FOLDER": folder, "REVISION": revision, "COMMAND": command,
        "WHEEL": wheel, "LOCK": lock, "FLAVOR": flavor, "GPUS": gpus, "RESUME": resume,
        "SYNC_SECONDS": sync_seconds, "WORK_DIR": WORK_DIR, "EXTRAS": list(extras),
        "SAFE_CMAKE_ARGS": SAFE_CMAKE_ARGS,
    }  # fmt: skip
    head = f'''# /// script
# requires-python = ">=3.11"
# dependencies = [{json.dumps(HUB_REQUIREMENT)}]
# ///
"""qmd-ft on Hugging Face Jobs (generated by qmd-ft {__version__}); see qmd_ft/jobs/script.py.

Installs the wheel and lock under FOLDER/code, runs `qmd-ft COMMAND` on the inputs under
FOLDER/inputs (REPO, a dataset, at commit REVISION) and commits what it writes to
FOLDER/outputs while it runs. The token comes from HF_TOKEN.
"""

import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, snapshot_download

'''
    body = "".join(
        f"{name} = {'None' if value is None else json.dumps(value)}\n"
        for name, value in constants.items()
    )
    return head + body + _BODY
