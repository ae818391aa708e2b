"""Publishing: local registry and the Hub (real client vs a local fake server), gated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_hub import FakeHub

from qmd_ft.config import EvalConfig
from qmd_ft.errors import UserError
from qmd_ft.evaluation import EvalRow, build_results, write_results
from qmd_ft.publish.registry import LocalRegistry, check_repo_name

TOKEN = "hf_TESTSECRETtoken0123456789"
REPO = "tobil/qmd-query-expansion-1.7B"


def make_model(tmp: Path, name: str, payload: str) -> Path:
    d = tmp / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "qwen3", "payload": payload}))
    (d / "model.safetensors").write_bytes(payload.encode() * 10)
    return d


def make_results(tmp: Path, model: Path, reward: float, name: str) -> Path:
    qfile = tmp / "queries.txt"
    qfile.write_text("# T\n" + "\n".join(f"q{i}" for i in range(20)) + "\n")
    rows = [
        EvalRow(
            query=f"q{i}",
            category="T",
            completion="lex: a",
            reward=reward,
            percentage=reward * 100,
            rating="Good",
        )
        for i in range(20)
    ]
    doc = build_results(
        rows,
        model=str(model),
        adapters=[],
        queries_file=qfile,
        gen=EvalConfig(),
        backend="cuda",
        device="cpu",
        seconds=0.1,
    )
    path = tmp / name
    write_results(doc, path)
    return path


def make_gguf_dir(out: Path, files: dict[str, bool | None]) -> Path:
    """An export folder as `export gguf` leaves it: files and a manifest saying which verified."""
    from qmd_ft.manifest import file_sha256, write_manifest

    out.mkdir(parents=True)
    entries = []
    for name, verified in files.items():
        (out / name).write_bytes(b"GGUF" + name.encode() * 8)
        entries.append(
            {"file": name, "bytes": (out / name).stat().st_size,
             "sha256": file_sha256(out / name), "verified": verified}
        )  # fmt: skip
    chosen = next(n for n, v in files.items() if v)
    (out / "Modelfile").write_text(f"FROM ./{chosen}\n")
    extra = {"files": entries, "modelfile": {"file": "Modelfile", "from": chosen}}
    write_manifest(out, "gguf", extra=extra)
    return out


def publish(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qmd_ft", "publish", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_repo_names() -> None:
    check_repo_name(REPO)
    for bad in (REPO + "-v2", REPO + "-sft", REPO + "-GRPO"):
        with pytest.raises(UserError, match="suffix"):
            check_repo_name(bad)
    check_repo_name(REPO + "-v2", force=True)


def test_local_registry_gate(tmp_path: Path) -> None:
    reg = tmp_path / "registry"
    m1 = make_model(tmp_path, "m1", "one")
    r1 = make_results(tmp_path, m1, 0.6, "r1.json")
    first = publish("--model", str(m1), "--eval", str(r1), "--registry", str(reg))
    assert first.returncode == 0, first.stderr
    assert "nothing deployed yet" in first.stdout
    dest = LocalRegistry(reg)
    card = (reg / REPO / "README.md").read_text()
    assert card.startswith("---\nbase_model:") and "mean reward (0-1) | 0.6000" in card
    assert json.loads((reg / REPO / "eval_results.json").read_text())["summary"]["n"] == 20
    assert dest.exists(REPO)

    worse = make_model(tmp_path, "m2", "two")
    r2 = make_results(tmp_path, worse, 0.5, "r2.json")
    before = (reg / REPO / "config.json").read_text()
    refused = publish("--model", str(worse), "--eval", str(r2), "--registry", str(reg))
    assert refused.returncode == 1 and "gate failed" in refused.stderr
    assert (reg / REPO / "config.json").read_text() == before  # never uploaded

    better = make_model(tmp_path, "m3", "three")
    r3 = make_results(tmp_path, better, 0.7, "r3.json")
    dry = publish("--model", str(better), "--eval", str(r3), "--registry", str(reg), "--dry-run")
    assert dry.returncode == 0 and "dry run: would commit" in dry.stdout
    assert (reg / REPO / "config.json").read_text() == before
    ok = publish("--model", str(better), "--eval", str(r3), "--registry", str(reg))
    assert ok.returncode == 0, ok.stderr
    assert "three" in (reg / REPO / "config.json").read_text()
    log = (reg / REPO / ".commits.jsonl").read_text().splitlines()
    assert len(log) == 2 and "+10.00 points vs deployed" in json.loads(log[1])["message"]


def test_eval_of_another_model_refused(tmp_path: Path) -> None:
    m1, m2 = make_model(tmp_path, "m1", "one"), make_model(tmp_path, "m2", "two")
    r = make_results(tmp_path, m1, 0.6, "r.json")
    out = publish("--model", str(m2), "--eval", str(r), "--registry", str(tmp_path / "reg"))
    assert out.returncode == 1 and "was not produced from" in out.stderr


def test_hub_publish_with_real_client(tmp_path: Path) -> None:
    m1 = make_model(tmp_path, "m1", "one")
    r1 = make_results(tmp_path, m1, 0.6, "r1.json")
    gguf = make_gguf_dir(tmp_path / "gguf", {"model-q4_k_m.gguf": True})
    with FakeHub() as hub:
        env = {
            "HF_ENDPOINT": hub.url,
            "HF_TOKEN": TOKEN,
            "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_DISABLE_XET": "1",
        }
        out = publish("--model", str(m1), "--eval", str(r1), "--gguf", str(gguf), env=env)
        assert out.returncode == 0, out.stderr
        files = hub.state.repos[REPO]
        assert {"config.json", "model.safetensors", "README.md", "eval_results.json"} <= set(files)
        assert "model-q4_k_m.gguf" in hub.state.repos[REPO + "-gguf"]
        assert "mean reward 0.6000" in hub.state.commits[REPO][0]
        # the deployed eval is fetched back from the Hub for the next release: a worse one fails
        m2 = make_model(tmp_path, "m2", "two")
        r2 = make_results(tmp_path, m2, 0.55, "r2.json")
        refused = publish("--model", str(m2), "--eval", str(r2), env=env)
        assert refused.returncode == 1 and f"hub:{REPO}/eval_results.json" in refused.stdout
        assert json.loads(files["config.json"])["payload"] == "one"
        # the token authenticates requests but never travels in a body, card or output
        assert any(TOKEN in r["headers"].get("authorization", "") for r in hub.state.requests)
        assert not any(TOKEN.encode() in r["body"] for r in hub.state.requests)
        assert TOKEN not in out.stdout + out.stderr + refused.stdout + refused.stderr


@pytest.mark.parametrize("private", [True, False])
def test_hub_repos_are_created_with_publish_private(tmp_path: Path, private: bool) -> None:
    m1 = make_model(tmp_path, "m1", "one")
    r1 = make_results(tmp_path, m1, 0.6, "r1.json")
    with FakeHub() as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "hf")}
        flag = f"publish.private={str(private).lower()}"
        out = publish("--model", str(m1), "--eval", str(r1), "--set", flag, env=env)
        assert out.returncode == 0, out.stderr
        creates = [
            json.loads(r["body"]) for r in hub.state.requests if r["path"] == "/api/repos/create"
        ]
        want = "private" if private else "public"  # huggingface_hub 1.x sends `visibility`
        assert creates and all(c.get("visibility") == want for c in creates), creates


def test_card_names_the_origin_model_and_training_stages(tmp_path: Path) -> None:
    from qmd_ft.manifest import write_manifest

    merged = make_model(tmp_path, "merged", "one")
    stages = [{"adapter": "outputs/sft", "kind": "sft-adapter", "training": {"max_steps": 7}}]
    write_manifest(merged, "merged", extra={"base_model": "Qwen/Qwen3-0.6B", "stages": stages})
    results = make_results(tmp_path, merged, 0.6, "r.json")  # after the manifest: it is hashed
    reg = tmp_path / "reg"
    out = publish("--model", str(merged), "--eval", str(results), "--registry", str(reg))
    assert out.returncode == 0, out.stderr
    card = (reg / REPO / "README.md").read_text()
    assert "base_model: Qwen/Qwen3-0.6B" in card and "max_steps: 7" in card


def test_dry_run_uploads_and_keeps_nothing(tmp_path: Path) -> None:
    """--dry-run gates and lists the release, then leaves no trace: no registry, no staging."""
    reg, tmp = tmp_path / "registry", tmp_path / "tmp"
    tmp.mkdir()
    model = make_model(tmp_path, "m1", "one")
    results = make_results(tmp_path, model, 0.6, "r1.json")
    args = ("--model", str(model), "--eval", str(results), "--registry", str(reg))
    dry = publish(*args, "--dry-run", env={"TMPDIR": str(tmp)})
    assert dry.returncode == 0, dry.stderr
    assert f"dry run: would commit 4 file(s) to local:{REPO}" in dry.stdout
    for name in ("README.md", "config.json", "eval_results.json", "model.safetensors"):
        assert f"  {name}\n" in dry.stdout
    assert not reg.exists() and list(tmp.iterdir()) == []
    real = publish(*args, env={"TMPDIR": str(tmp)})
    assert real.returncode == 0, real.stderr
    assert list(tmp.iterdir()) == []  # the staged card and results go once uploaded
    assert (reg / REPO / "README.md").is_file()
