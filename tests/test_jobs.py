"""HF Jobs: planning, the job script, submission and management against a local fake Hub.

The real huggingface_hub client talks to `FakeHub` (127.0.0.1). A submitted job is then "run"
the way HF Jobs would run it: its spec's command, environment and secrets, with a `uv` shim
on PATH that runs Python here instead of installing anything, so the bootstrap, the script's
download, the qmd-ft command and the upload of outputs all execute, offline.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from fake_hub import FakeHub

import qmd_ft.jobs.code as code_mod
from qmd_ft.cli.jobs_cmd import submit_cli_job
from qmd_ft.errors import UserError
from qmd_ft.jobs.code import WHEEL_ENV, ship_code
from qmd_ft.jobs.inputs import EXTERNAL, job_inputs, local_command
from qmd_ft.jobs.script import render_script
from qmd_ft.jobs.submit import BOOTSTRAP, check_gpus

TOKEN = "hf_JOBSSECRETsentinel0123456789"
ROOT = Path(__file__).resolve().parents[1]
JOBS_REPO = "datasets/user/qmd-ft-jobs"


def make_project(tmp: Path) -> Path:
    """A small project: one raw data file, a config, eval queries, an existing output dir."""
    proj = tmp / "proj"
    (proj / "data").mkdir(parents=True)
    shutil.copy(ROOT / "data" / "technical.jsonl", proj / "data" / "technical.jsonl")
    (proj / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "sft.yaml", proj / "configs" / "sft.yaml")
    (proj / "evals").mkdir()
    (proj / "evals" / "queries.txt").write_text("# T\nrust async\n")
    (proj / "data" / "train").mkdir()
    (proj / "data" / "train" / "train.jsonl").write_text("{}\n")
    (proj / "outputs" / "sft").mkdir(parents=True)
    (proj / "outputs" / "sft" / "adapter.bin").write_bytes(b"\0" * 64)
    return proj


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One wheel of this tree for the session's jobs (building it is the slow part)."""
    return ship_code(tmp_path_factory.mktemp("wheel")).wheel


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wheel: Path):
    """A fake Hub that in-process clients use, with the sentinel token and no saved login."""
    from huggingface_hub import constants

    monkeypatch.setenv(WHEEL_ENV, str(wheel))
    with FakeHub() as fake:
        monkeypatch.setattr(constants, "ENDPOINT", fake.url)
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield fake


def cli(*args: str, hub: FakeHub, tmp: Path, cwd: Path | None = None, token: bool = True):
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env |= {
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(tmp / "hf-home"),
        "HF_HUB_DISABLE_XET": "1",
        "COLUMNS": "160",
    }
    if token:
        env["HF_TOKEN"] = TOKEN
    return subprocess.run(
        [sys.executable, "-m", "qmd_ft", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_job_options_are_dropped() -> None:
    argv = "train sft --hf-jobs --flavor a10g-large --timeout=2h --namespace org --max-steps 5"
    argv = argv.split()
    assert local_command(argv) == ["train", "sft", "--max-steps", "5"]


def test_inputs_mirror_the_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proj = make_project(tmp_path)
    ext = tmp_path / "tiny"
    ext.mkdir()
    (ext / "config.json").write_text("{}")
    monkeypatch.chdir(proj)
    typed = "train sft --config configs/sft.yaml --backend cuda --hf-jobs --flavor a10g-large"
    argv = [*typed.split(), "--set", f"model.base={ext}", "--output", "outputs/x"]
    plan = job_inputs(argv, Path("configs/sft.yaml"))
    moved = plan.command[plan.command.index("--set") + 1]
    assert moved.startswith(f"model.base={EXTERNAL}/") and moved.endswith("/tiny")
    want = "train sft --config configs/sft.yaml --backend cuda --set"
    assert plan.command == [*want.split(), moved, "--output", "outputs/x"]
    rel = moved.partition("=")[2]
    assert plan.files[f"{rel}/config.json"] == ext / "config.json"
    # the config's inputs travel at their paths; its outputs (large, rewritten) stay here
    assert {
        "configs/sft.yaml",
        "data/train/train.jsonl",
        "data/technical.jsonl",
        "evals/queries.txt",
    } <= set(plan.files)
    assert not any(f.startswith("outputs/") for f in plan.files)
    assert (
        "outputs/sft/adapter.bin" in job_inputs([*argv, "--resume"], Path("configs/sft.yaml")).files
    )
    # a config value outside the project is moved by an appended --set
    cfg = proj / "configs" / "abs.yaml"
    cfg.write_text(f"model:\n  base: {ext}\n")
    plan = job_inputs(["train", "sft", "--config", str(cfg)], cfg)
    assert plan.command[:4] == ["train", "sft", "--config", "configs/abs.yaml"]
    assert plan.command[4] == "--set" and plan.command[5] == f'model.base="{rel}"'
    with pytest.raises(UserError, match="whole project"):
        job_inputs(["data", "validate", "."], None)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_the_job_ships_a_wheel_of_the_working_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No git remote, no push, uncommitted changes: the wheel carries the tree as it is."""
    monkeypatch.delenv(WHEEL_ENV, raising=False)
    code = ship_code(tmp_path)
    with zipfile.ZipFile(code.wheel) as whl:
        names = whl.namelist()
        shipped = whl.read("qmd_ft/jobs/code.py")
    assert "qmd_ft/backends/cuda/__init__.py" in names
    assert shipped == (ROOT / "qmd_ft/jobs/code.py").read_bytes()
    head = git(ROOT, "rev-parse", "HEAD")
    assert code.commit == head and code.lock == ROOT / "requirements.lock"
    dirty = bool(git(ROOT, "status", "--porcelain", "--", "qmd_ft", "backends", "pyproject.toml"))
    assert code.record()["dirty"] == dirty
    monkeypatch.setattr(code_mod, "PROJECT_ROOT", tmp_path / "site-packages")
    with pytest.raises(UserError, match="not a source checkout"):
        ship_code(tmp_path)


def test_script_content(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    command = ["train", "sft", "--config", "configs/sft.yaml", "--set", 'x="q\'s" null']
    text = render_script(
        repo="user/qmd-ft-jobs",
        folder="runs/r1",
        revision="b" * 40,
        command=command,
        wheel="qmd_ft-0.1.0-py3-none-any.whl",
        lock="requirements.lock",
        flavor="a10g-largex2",
        gpus=2,
    )
    meta = "\n".join(
        line.removeprefix("# ")
        for line in text.split("# /// script\n", 1)[1].split("# ///", 1)[0].splitlines()
    )
    assert tomllib.loads(meta) == {
        "requires-python": ">=3.11",
        "dependencies": ["huggingface_hub>=1.21"],
    }  # qmd-ft is never installed by name: the job installs the shipped wheel
    ns: dict = {}
    exec(compile(text, "job.py", "exec"), ns)  # valid Python, with the literal values
    assert ns["COMMAND"] == command and ns["REVISION"] == "b" * 40
    assert ns["REPO"] == "user/qmd-ft-jobs" and ns["FOLDER"] == "runs/r1"
    assert ns["GPUS"] == 2 and ns["RESUME"] is None
    assert ns["EXTRAS"] == []  # nothing beyond the lock and the wheel
    assert TOKEN not in text


def test_gguf_work_installs_llama_cpp_after_the_lock_without_amx() -> None:
    """llama-cpp-python has no wheel to lock: a job that verifies or K-quantizes installs it
    after the lock, built with the flags that avoid the AMX crash."""
    from qmd_ft.gguf.runtime import RUNTIME_REQUIREMENTS, SAFE_CMAKE_ARGS

    args = dict(repo="u/j", folder="runs/r", revision="c" * 40, wheel="w.whl", flavor="cpu-basic")
    text = render_script(
        **args, command=["export", "gguf"], lock="requirements.lock", gpus=0,
        extras=RUNTIME_REQUIREMENTS,
    )  # fmt: skip
    ns: dict = {}
    exec(compile(text, "job.py", "exec"), ns)
    assert ns["EXTRAS"] == ["llama-cpp-python>=0.3.36"]
    assert "AMX_INT8=OFF" in ns["SAFE_CMAKE_ARGS"] == SAFE_CMAKE_ARGS
    body = text.split("def install", 1)[1].split("def files", 1)[0]
    assert body.index("LOCK") < body.index("WHEEL") < body.index("EXTRAS")


def test_submit_errors_before_any_request(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(make_project(tmp_path))
    argv = ["train", "sft", "--hf-jobs"]
    cfg = Path("configs/sft.yaml")
    with pytest.raises(UserError, match="unknown flavor 'a10g-huge': choose one of cpu-basic"):
        submit_cli_job(argv, cfg, flavor="a10g-huge", timeout="2h")
    for bad in ("2 hours", "1.5", "0", "0.0001s", "-1h", "1e3"):
        with pytest.raises(UserError, match="--timeout"):
            submit_cli_job(argv, cfg, flavor="a10g-large", timeout=bad)
    with pytest.raises(UserError, match="data/none not found: the job reads it"):
        submit_cli_job(argv, cfg, flavor="a10g-large", timeout="2h", required=["data/none"])
    with monkeypatch.context() as m, pytest.raises(UserError, match="not a qmd_ft-"):
        m.setenv(WHEEL_ENV, str(tmp_path / "nope.whl"))
        submit_cli_job(argv, cfg, flavor="a10g-large", timeout="2h")
    with monkeypatch.context() as m, pytest.raises(UserError, match=r"installed: 1.0.0\)"):
        m.setattr(importlib.metadata, "version", lambda name: "1.0.0")
        submit_cli_job(argv, cfg, flavor="a10g-large", timeout="2h")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(UserError, match="no Hugging Face token: set HF_TOKEN"):
        submit_cli_job(argv, cfg, flavor="a10g-large", timeout="2h")
    assert hub.state.requests == []


@pytest.mark.parametrize(
    ("flavor", "gpus", "want"),
    [("cpu-basic", None, 1), ("a10g-large", None, 1), ("a10g-largex4", None, 4),
     ("h200x8", 2, 2), ("a10g-large", 4, None), ("l4x4", 5, None)],
)  # fmt: skip
def test_gpu_count_comes_from_the_flavor(flavor: str, gpus: int | None, want: int | None) -> None:
    if want is None:
        with pytest.raises(UserError, match=f"--gpus {gpus}: flavor {flavor} has"):
            check_gpus(flavor, gpus)
    else:
        assert check_gpus(flavor, gpus) == want


def write_uv_shim(bin_dir: Path) -> None:
    """uv as HF Jobs has it, offline: `uv run` runs this Python; `uv venv` and installing the
    shipped wheel are real uv; installing the lock (torch & co., from the index) is replaced by
    a .pth file pointing at this venv's packages, and recorded."""
    bin_dir.mkdir()
    shim = bin_dir / "uv"
    real = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    site = next(p for p in sys.path if p.endswith("site-packages"))
    shim.write_text(f"""#!{sys.executable}
import os, pathlib, subprocess, sys
args = sys.argv[1:]
if args[:2] == ["pip", "install"] and "-r" in args:
    python = args[args.index("--python") + 1]
    assert "--require-hashes" in args, args
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    lib = subprocess.run([python, "-c", where], capture_output=True, text=True,
                         check=True).stdout.strip()
    pathlib.Path(lib, "_lock.pth").write_text({site!r} + "\\n")
    print("shim: installed", args[args.index("-r") + 1], flush=True)
    sys.exit(0)
if args[0] in ("venv", "pip"):
    os.execv({real!r}, [{real!r}, *args])
args = args[1:]
while args[0].startswith("--"):
    args = args[2:]
if args[0] == "python":
    args = args[1:]
os.execv(sys.executable, [sys.executable, *args])
""")
    shim.chmod(0o755)


def run_like_hf_jobs(
    spec: dict, hub: FakeHub, tmp: Path, gpus: int = 0
) -> subprocess.CompletedProcess[str]:
    """The job's command with its env and secrets, in an empty dir, against the fake Hub; with
    `gpus`, an nvidia-smi that lists that many."""
    if not (tmp / "bin").exists():
        write_uv_shim(tmp / "bin")
    smi = tmp / "bin" / "nvidia-smi"
    smi.unlink(missing_ok=True)
    if gpus:
        smi.write_text("#!/bin/sh\n" + "".join(f"echo 'GPU {i}: fake'\n" for i in range(gpus)))
        smi.chmod(0o755)
    container = Path(tempfile.mkdtemp(dir=tmp, prefix="container-"))  # a fresh machine
    env = {
        "PATH": f"{tmp / 'bin'}:/usr/bin:/bin",
        "HOME": str(container),
        "HF_HOME": str(container / ".hf"),
        "HF_ENDPOINT": hub.url,
        "HF_HUB_DISABLE_XET": "1",
        **spec["environment"],
        **spec["secrets"],
    }
    return subprocess.run(spec["command"], cwd=container, env=env, capture_output=True, text=True)


def test_submit_run_and_manage_a_job(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    proj = make_project(tmp_path)
    monkeypatch.chdir(proj)
    # --evals typed out: a default path is not on the command line, so it would not travel
    # (and `data prepare` refuses to run without its eval set)
    argv = "data prepare --data data/*.jsonl --evals evals/queries.txt --out data/prepared"
    argv = [*argv.split(), "--hf-jobs", "--flavor", "cpu-basic", "--timeout", "10m"]
    job = submit_cli_job(argv, None, flavor="cpu-basic", timeout="10m")
    printed = capsys.readouterr().out
    assert f"job {job.id} submitted" in printed and job.url in printed
    assert job.url == f"{hub.url}/jobs/user/{job.id}"

    spec = hub.state.job_specs[job.id]
    folder, pinned = spec["command"][-2:]
    assert spec["command"] == [
        "uv",
        "run",
        "--with",
        "huggingface_hub>=1.21",
        "python",
        "-c",
        BOOTSTRAP,
        "user/qmd-ft-jobs",
        folder,
        pinned,
    ]
    assert len(BOOTSTRAP) < 255 and "/" not in BOOTSTRAP  # see BOOTSTRAP's docstring
    assert spec["secrets"] == {"HF_TOKEN": TOKEN}
    assert spec["flavor"] == "cpu-basic" and spec["timeoutSeconds"] == 600
    assert spec["labels"] == {
        "app": "qmd-ft",
        "command": "data-prepare",
        "name": "qmd-ft-data-prepare",
    }
    files = hub.state.repos[JOBS_REPO]
    record = json.loads(files[f"{folder}/job.json"])
    assert record["command"] == argv[:8]  # as typed, without the job options
    assert f"{folder}/inputs/data/technical.jsonl" in files
    script = files[f"{folder}/job.py"].decode()
    assert 'dependencies = ["huggingface_hub>=1.21"]' in script and "qmd-ft[" not in script
    # the code travels with the inputs, in the same commit: a wheel of this tree, the lock
    code = record["code"]
    assert code["git_commit"] == git(ROOT, "rev-parse", "HEAD") and isinstance(code["dirty"], bool)
    assert files[f"{folder}/code/{code['wheel']}"] == Path(os.environ[WHEEL_ENV]).read_bytes()
    assert files[f"{folder}/code/requirements.lock"] == (ROOT / "requirements.lock").read_bytes()
    assert hub.state.lfs, "the wheel goes through LFS, as on the Hub"
    # the script downloads the inputs commit, which the script's own commit follows
    inputs_rev = script.split('REVISION = "', 1)[1][:40]
    snapshots = hub.state.snapshots[JOBS_REPO]
    assert (
        f"{folder}/job.py" not in snapshots[inputs_rev] and f"{folder}/job.py" in snapshots[pinned]
    )
    # the token authenticates and is the job's secret: never in a file, the job's env or command
    spec_public = {k: v for k, v in spec.items() if k != "secrets"}
    assert TOKEN not in json.dumps(spec_public)
    assert not any(TOKEN.encode() in b for b in files.values())
    job_posts = [r for r in hub.state.requests if r["path"] == "/api/jobs/user"]
    assert len(job_posts) == 1
    assert not any(TOKEN.encode() in r["body"] for r in hub.state.requests if r not in job_posts)

    done = run_like_hf_jobs(spec, hub, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    # the job ran the shipped wheel, installed into its own venv after the hash-checked lock
    assert "shim: installed" in done.stdout and "requirements.lock" in done.stdout
    installed = done.stdout.split("qmd-ft from the shipped wheel: ", 1)[1].splitlines()[0]
    assert "/.venv/lib/" in installed and str(ROOT) not in installed
    assert (
        "$ qmd-ft data prepare --data 'data/*.jsonl' --evals evals/queries.txt --out data/prepared"
        in done.stdout
    )
    files = hub.state.repos[JOBS_REPO]
    outputs = {p for p in files if p.startswith(f"{folder}/outputs/")}
    assert {
        f"{folder}/outputs/data/prepared/{n}"
        for n in ("train.jsonl", "val.jsonl", "dataset_info.json")
    } == outputs
    assert "outputs (exit 0)" in hub.state.commits[JOBS_REPO][-1]

    # manage it with the CLI (a separate process, like a user)
    hub.state.job_logs[job.id] = ["step 1/2", "step 2/2"]
    other = dict(hub.state.jobs[job.id], id="0" * 24, labels=None, environment={})
    hub.state.jobs[other["id"]] = other
    ps = cli("jobs", "ps", hub=hub, tmp=tmp_path)
    assert ps.returncode == 0, ps.stderr
    assert job.id in ps.stdout and "RUNNING" in ps.stdout and "cpu-basic" in ps.stdout
    assert "qmd-ft data prepare" in ps.stdout and other["id"] not in ps.stdout
    listed = json.loads(cli("jobs", "ps", "--all", "--json", hub=hub, tmp=tmp_path).stdout)
    assert {r["id"] for r in listed} == {job.id, other["id"]}
    logs = cli("jobs", "logs", job.id, hub=hub, tmp=tmp_path)
    assert logs.stdout.splitlines() == ["step 1/2", "step 2/2"]
    inspect = cli("jobs", "inspect", job.id, hub=hub, tmp=tmp_path)
    assert f"outputs:  user/qmd-ft-jobs/{folder}/outputs" in inspect.stdout
    assert "secrets:  HF_TOKEN" in inspect.stdout and TOKEN not in inspect.stdout
    cancel = cli("jobs", "cancel", job.id, hub=hub, tmp=tmp_path)
    assert cancel.returncode == 0 and f"job {job.id}: CANCELED" in cancel.stdout
    follow = cli("jobs", "logs", job.id, "--follow", hub=hub, tmp=tmp_path)  # ended: returns
    assert follow.returncode == 0 and "step 2/2" in follow.stdout

    pulled = cli("jobs", "pull", job.id, hub=hub, tmp=tmp_path, cwd=proj)
    assert pulled.returncode == 0, pulled.stderr
    assert (proj / "data" / "prepared" / "train.jsonl").read_bytes() == files[
        f"{folder}/outputs/data/prepared/train.jsonl"
    ]
    again = cli("jobs", "pull", job.id, hub=hub, tmp=tmp_path, cwd=proj)
    assert again.returncode == 1 and "exists: pass --force" in again.stderr

    missing = cli("jobs", "inspect", "f" * 24, hub=hub, tmp=tmp_path)
    assert missing.returncode == 1 and "not found" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    # a command with --json gets one JSON object on stdout instead of the summary
    capsys.readouterr()
    argv = ["score", "data/technical.jsonl", "--json", "--hf-jobs", "--flavor", "cpu-basic"]
    scored = submit_cli_job(argv, None, flavor="cpu-basic", timeout="5m")
    assert json.loads(capsys.readouterr().out)["job_id"] == scored.id
    no_token = cli("jobs", "ps", hub=hub, tmp=tmp_path, token=False)
    assert no_token.returncode == 1 and "no Hugging Face token" in no_token.stderr


@pytest.mark.slow
def test_train_job_on_the_tiny_model(
    hub: FakeHub, tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real use: `train sft --hf-jobs` with a model outside the project, run as HF would."""
    for module in ("torch", "trl", "peft", "qmd_ft.backends.cuda"):
        pytest.importorskip(module)
    from qmd_ft.data.prepare import prepare

    proj = make_project(tmp_path)
    monkeypatch.chdir(proj)
    prepare([Path("data/technical.jsonl")], Path("data/train"), None)
    typed = "train sft --config configs/sft.yaml --backend cuda --device cpu --max-steps 2"
    sets = [f"model.base={tiny_model_dir}", "training.batch_size=2", "model.output=outputs/job-sft"]
    argv = [*typed.split(), *(t for kv in sets for t in ("--set", kv)), "--hf-jobs"]
    job = submit_cli_job(argv, Path("configs/sft.yaml"), flavor="a10g-large", timeout="1h")
    spec = hub.state.job_specs[job.id]
    folder = spec["environment"]["QMD_FT_JOB_FOLDER"]
    done = run_like_hf_jobs(spec, hub, tmp_path, gpus=1)  # the a10g's GPU, seen by nvidia-smi
    assert done.returncode == 0, done.stdout + done.stderr
    files = hub.state.repos[JOBS_REPO]
    assert f"{folder}/outputs/outputs/job-sft/adapter_config.json" in files
    assert not any(p.startswith(f"{folder}/outputs/data/") for p in files)  # inputs unchanged


@pytest.mark.parametrize(
    ("args", "word", "extras"),
    [
        (["train", "sft", "--config", "configs/sft.yaml", "--backend", "cuda"], "train", []),
        (["eval", "--model", "outputs/sft", "--queries", "evals/queries.txt"], "eval", []),
        (["export", "gguf", "--model", "outputs/sft", "--quant", "f16"], "export", ["llama"]),
        (
            ["export", "gguf", "--model", "outputs/sft", "--quant", "f16", "--no-verify"],
            "export",
            [],
        ),
    ],
)
def test_commands_submit_with_hf_jobs(
    hub: FakeHub,
    tmp_path: Path,
    args: list[str],
    word: str,
    extras: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--hf-jobs` on train, eval and export submits the same command, token only as secret."""
    proj = make_project(tmp_path)
    out = cli(*args, "--hf-jobs", "--namespace", "user", hub=hub, tmp=tmp_path, cwd=proj)
    assert out.returncode == 0, out.stderr
    (spec,) = hub.state.job_specs.values()
    assert "job" in out.stdout and "qmd-ft jobs logs" in out.stdout
    hints = [line for line in out.stdout.splitlines() if "qmd-ft jobs " in line]
    assert len(hints) == 2 and all(h.endswith("--namespace user") for h in hints), out.stdout
    assert spec["secrets"] == {"HF_TOKEN": TOKEN}
    assert TOKEN not in json.dumps({k: v for k, v in spec.items() if k != "secrets"})
    record = json.loads(
        hub.state.repos[JOBS_REPO]
        .get(next(p for p in hub.state.repos[JOBS_REPO] if p.endswith("job.json")))
        .decode()
    )
    assert word in record["command"]
    # llama.cpp is installed in the job only when verification or K-quants need it
    assert [e.split("-")[0] for e in record["extras"]] == extras


def test_hub_errors_turns_connection_errors_into_one_line() -> None:
    from huggingface_hub.utils import _http

    from qmd_ft.jobs.hub import hub_errors

    client = next(
        getattr(_http, name) for name in ("httpx2", "httpx") if hasattr(_http, name)
    )  # whichever HTTP client huggingface_hub uses
    request = client.Request("GET", "https://hub.example/api/jobs/me")
    expected = "at https://hub.example: "
    with pytest.raises(UserError) as e, hub_errors("list jobs"):
        raise client.ConnectError("[Errno -2] Name or service not known", request=request)
    assert str(e.value) == (
        f"list jobs: cannot reach the Hugging Face Hub {expected}Name or service not known"
    )
    with pytest.raises(UserError) as e, hub_errors("logs"):
        raise client.ReadTimeout("timed out", request=request)
    assert str(e.value) == f"logs: cannot reach the Hugging Face Hub {expected}timed out"
    with pytest.raises(ZeroDivisionError), hub_errors("list jobs"):
        raise ZeroDivisionError  # anything else stays a bug with its traceback


@pytest.mark.parametrize("command", [["ps"], ["inspect", "abc"], ["logs", "abc"], ["cancel", "x"]])
def test_jobs_commands_without_a_reachable_hub_say_so_in_one_line(command: list[str]) -> None:
    env = {**os.environ, "HF_TOKEN": TOKEN, "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing there
    r = subprocess.run(
        [sys.executable, "-m", "qmd_ft", "jobs", *command],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: whoami: cannot reach the Hugging Face Hub at http://127.0.")
    assert len(r.stderr.strip().splitlines()) == 1
