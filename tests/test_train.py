"""`qmd-ft train` before any model loads: dry-run checks, HF Jobs options, the data dir.

Every test here runs the CLI in a small project (a raw data file, eval queries) and, except
one, stops before training: a dry run, or an error. The one real run trains one step of the
tiny model on the CPU to show that changed data files are prepared again before training.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cuda_support import EXAMPLES, write_examples

from qmd_ft.data.prepare import INFO_FILE, TRAIN_FILE, prepare

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qmd_ft", "train", *args], cwd=cwd, capture_output=True, text=True
    )


def one_line_error(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 1 with a single `error:` line holding every needle, and no plan printed."""
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr and "plan:" not in r.stdout
    for needle in needles:
        assert needle in r.stderr, r.stderr


def prepared(project: Path) -> Path:
    """`data/train` prepared from the project's files, as `qmd-ft data prepare` run there
    makes it (recording the relative paths)."""
    with contextlib.chdir(project):
        prepare(
            [Path("data/examples.jsonl")],
            Path("data/train"),
            Path("evals/queries.txt"),
            val_fraction=0.25,
            seed=0,
        )
    return project / "data" / "train"


BAD_OPTIONS = [
    (["--device", "tpu"], "cuda", "--device tpu"),
    (["--backend", "gguf"], None, "inference (eval) only"),
    (["--backend", "mlx", "--device", "tpu"], "mlx", "--device 'tpu'"),
    (["--model", "/nonexistent"], "cuda", "model.base /nonexistent: not found"),
    (["--set", "training.use_vllm=true", "--device", "cpu"], "cuda", "training.use_vllm"),
]


@pytest.mark.parametrize(("args", "backend", "message"), BAD_OPTIONS)
def test_dry_run_refuses_what_the_real_run_refuses(
    project: Path, args: list[str], backend: str | None, message: str
) -> None:
    if backend == "cuda":
        pytest.importorskip("trl")
    elif backend == "mlx":
        pytest.importorskip("mlx_lm")
    one_line_error(cli("sft", "--dry-run", *args, cwd=project), message)
    assert not (project / "data" / "train").exists()


def test_hf_jobs_options_are_checked_and_the_job_is_in_the_plan(project: Path) -> None:
    pytest.importorskip("huggingface_hub")
    one_line_error(
        cli("sft", "--hf-jobs", "--flavor", "nonsense", "--dry-run", cwd=project),
        "unknown flavor 'nonsense'",
    )
    one_line_error(
        cli("sft", "--hf-jobs", "--timeout", "forever", "--dry-run", cwd=project),
        "--timeout 'forever'",
    )
    one_line_error(
        cli("sft", "--hf-jobs", "--backend", "mlx", "--dry-run", cwd=project),
        "--hf-jobs runs the cuda backend",
    )
    job_args = ["--hf-jobs", "--flavor", "t4-small", "--timeout", "30m"]
    r = cli("sft", *job_args, "--dry-run", cwd=project)
    assert r.returncode == 0, r.stderr
    job = next(line for line in r.stdout.splitlines() if "HF Jobs" in line)
    assert "t4-small" in job and "timeout 30m" in job
    # the job's own command: no job or dry-run flags, the flavor's hardware made explicit
    assert job.endswith("qmd-ft train sft --backend cuda --device cuda"), job
    # Without --dry-run, a bad flavor stops the command before it prepares (writes) anything.
    one_line_error(cli("sft", "--hf-jobs", "--flavor", "nonsense", cwd=project), "nonsense")
    assert not (project / "data" / "train").exists()


def test_dataset_name_that_is_a_hub_id_says_how_to_import_it(project: Path) -> None:
    pytest.importorskip("trl")
    r = cli("sft", "--dry-run", "--set", "dataset.name=tobil/qmd-data", cwd=project)
    one_line_error(r, "dataset.name tobil/qmd-data", "qmd-ft data import-hf tobil/qmd-data")
    assert not (project / "tobil").exists()
    # The default, data/train, is still prepared next to the data it comes from.
    assert "prepare data/train from data/*.jsonl" in cli("sft", "--dry-run", cwd=project).stdout


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "invalid JSON"),
        ('{"prompt": "p"}', "missing key(s) 'completion'"),
        ('["prompt", "completion"]', "expected a JSON object"),
    ],
)
def test_a_damaged_split_is_one_line_with_its_place(project: Path, line: str, reason: str) -> None:
    pytest.importorskip("trl")
    train = prepared(project) / TRAIN_FILE
    rows = train.read_text().splitlines()
    rows[1] = line
    train.write_text("\n".join(rows) + "\n")
    where = train.relative_to(project)
    one_line_error(cli("sft", "--dry-run", cwd=project), f"{where}:2: {reason}")


def test_grpo_on_messages_needs_the_messages_key(project: Path) -> None:
    pytest.importorskip("trl")
    train = prepared(project) / TRAIN_FILE
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    del rows[2]["messages"]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sft = project / "sft"  # GRPO's start is checked, not loaded: a config.json will do
    sft.mkdir()
    (sft / "config.json").write_text("{}")
    r = cli("grpo", "--dry-run", "--set", f"model.sft={sft}", cwd=project)
    one_line_error(r, "train.jsonl:3: missing key(s) 'messages'")
    field = ["--set", "dataset.prompt_field=prompt"]
    r = cli("grpo", "--dry-run", "--set", f"model.sft={sft}", *field, cwd=project)
    assert r.returncode == 0, r.stderr


def test_changed_data_files_are_prepared_again_not_used_stale(
    project: Path, tiny_model_dir: Path
) -> None:
    pytest.importorskip("trl")
    data = prepared(project)
    added = "zebra migration patterns"
    examples = [*EXAMPLES, (added, EXAMPLES[0][1])]
    write_examples(project / "data" / "examples.jsonl", examples)

    plan = cli("sft", "--dry-run", cwd=project)
    assert "prepare data/train again: the files it was prepared from changed" in plan.stdout
    assert added not in (data / TRAIN_FILE).read_text() + (data / "val.jsonl").read_text()

    # A resumed run must not switch data under its checkpoint.
    ckpt = project / "outputs" / "sft" / "checkpoint-2"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text('{"global_step": 2, "max_steps": 4}')
    one_line_error(
        cli("sft", "--dry-run", "--resume", cwd=project),
        "--resume: the files data/train was prepared from changed",
    )

    small = ["--set", "training.batch_size=2", "--set", "lora.target_modules=[q_proj]"]
    args = ["sft", "--device", "cpu", "--model", str(tiny_model_dir), "--max-steps", "1"]
    r = cli(*args, *small, "--output", "outputs/new", cwd=project)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "preparing" in r.stdout
    info = json.loads((data / INFO_FILE).read_text())
    assert info["counts"]["rows_read"] == len(examples)
    assert added in (data / TRAIN_FILE).read_text() + (data / "val.jsonl").read_text()
    manifest = json.loads((project / "outputs" / "new" / "manifest.json").read_text())
    assert manifest["data_sha256"] == info["inputs_sha256"]


def test_resume_towards_another_step_total_is_refused(project: Path) -> None:
    pytest.importorskip("trl")
    prepared(project)
    ckpt = project / "outputs" / "sft" / "checkpoint-6"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text('{"global_step": 6, "max_steps": 6}')
    r = cli("sft", "--dry-run", "--resume", "--max-steps", "7", cwd=project)
    one_line_error(r, "planned for 6 steps", "--max-steps 6")
    assert cli("sft", "--dry-run", "--resume", "--max-steps", "6", cwd=project).returncode == 0


def test_auto_prepare_refuses_a_missing_eval_set(project: Path) -> None:
    """As `data prepare`: eval queries that cannot be kept out of training are an error, and
    dataset.evals=null is the explicit way to train without an eval set."""
    (project / "evals" / "queries.txt").unlink()
    args = ["sft", "--config", "configs/sft.yaml", "--device", "cpu", "--dry-run"]
    one_line_error(cli(*args, cwd=project), "dataset.evals evals/queries.txt: not found")
    ok = cli(*args, "--set", "dataset.evals=null", cwd=project)
    assert ok.returncode == 0, ok.stderr
    assert not (project / "data" / "train").exists()  # a dry run prepares nothing
