"""Releases under faults: hostile repo names, kills mid-publish, races, stale files, outages.

Every case ends with the registry holding one whole release (the old or the new one), and the
command saying in one line what happened and how to finish.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fake_hub import FakeHub
from test_publish import REPO, TOKEN, make_gguf_dir, make_model, make_results, publish

from qmd_ft.errors import UserError
from qmd_ft.publish.registry import LocalRegistry, check_repo_name


def tree(d: Path) -> dict[str, bytes]:
    return {
        p.relative_to(d).as_posix(): p.read_bytes()
        for p in sorted(d.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


@pytest.mark.parametrize(
    "bad",
    ["../victim", "local/..", "local/.", "/abs/x", "a//b", "a/b/c", "", "a/", "a/.hidden",
     "a/b..c", "a/-x", "x" * 200 + "/y"],
)  # fmt: skip
def test_repo_names_stay_inside_the_registry(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UserError, match="expected owner/name"):
        check_repo_name(bad, force=True)
    reg = LocalRegistry(tmp_path / "reg")
    with pytest.raises(UserError):
        reg.upload(bad, {"x": tmp_path}, "m")


def test_cli_refuses_a_repo_climbing_out_and_touches_nothing(tmp_path: Path) -> None:
    m1 = make_model(tmp_path, "m1", "one")
    r1 = make_results(tmp_path, m1, 0.6, "r1.json")
    reg = tmp_path / "reg"
    ok = publish("--model", str(m1), "--eval", str(r1), "--registry", str(reg))
    assert ok.returncode == 0, ok.stderr
    before = tree(tmp_path)
    for bad in ("../victim", "local/..", "tobil/.."):
        out = publish("--model", str(m1), "--eval", str(r1), "--registry", str(reg), "--repo", bad)
        assert out.returncode == 1 and out.stderr.startswith("error: repo"), out.stderr
        assert len(out.stderr.splitlines()) == 1
    assert tree(tmp_path) == before


def test_a_release_replaces_the_whole_repo_locally(tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    m1 = make_model(tmp_path, "m1", "one")
    assert publish("--model", str(m1), "--eval", str(make_results(tmp_path, m1, 0.5, "r1.json")),
                   "--registry", str(reg)).returncode == 0  # fmt: skip
    m2 = make_model(tmp_path, "m2", "two")  # sharded weights: the single file must go
    (m2 / "model.safetensors").unlink()
    for i in (1, 2):
        (m2 / f"model-0000{i}-of-00002.safetensors").write_bytes(b"shard%d" % i)
    r2 = make_results(tmp_path, m2, 0.7, "r2.json")
    out = publish("--model", str(m2), "--eval", str(r2), "--registry", str(reg))
    assert out.returncode == 0, out.stderr
    files = set(tree(reg / REPO))
    assert "model.safetensors" not in files
    assert {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"} <= files
    assert [p.name for p in (reg / "tobil").iterdir() if p.name.startswith(".")] == [
        ".qmd-query-expansion-1.7B.lock"
    ]  # no staging or set-aside release left behind


def hub_env(hub: FakeHub, tmp: Path) -> dict[str, str]:
    return {"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "HF_HOME": str(tmp / "hf")}


def test_a_hub_release_deletes_stale_files_in_the_same_pinned_commit(tmp_path: Path) -> None:
    m1 = make_model(tmp_path, "m1", "one")
    r1 = make_results(tmp_path, m1, 0.5, "r1.json")
    g1 = make_gguf_dir(tmp_path / "g1", {"m-q4_k_m.gguf": True, "m-q8_0.gguf": True})
    with FakeHub() as hub:
        env = hub_env(hub, tmp_path)
        assert publish("--model", str(m1), "--eval", str(r1), "--gguf", str(g1),
                       env=env).returncode == 0  # fmt: skip
        assert hub.state.lfs, "weights travel through LFS, as on the Hub"
        for files in (hub.state.repos[REPO], hub.state.snapshots[REPO][hub.state.heads[REPO]]):
            files["retrieval_results.json"] = b"{}"  # an older release's extra file
        m2 = make_model(tmp_path, "m2", "two")
        (m2 / "model.safetensors").rename(m2 / "model-00001-of-00001.safetensors")
        r2 = make_results(tmp_path, m2, 0.7, "r2.json")
        g2 = make_gguf_dir(tmp_path / "g2", {"m-q4_k_m.gguf": True})
        n = len(hub.state.commits[REPO])
        out = publish("--model", str(m2), "--eval", str(r2), "--gguf", str(g2), env=env)
        assert out.returncode == 0, out.stderr
        files = hub.state.repos[REPO]
        assert "model.safetensors" not in files and "retrieval_results.json" not in files
        assert files["model-00001-of-00001.safetensors"] == b"two" * 10
        assert len(hub.state.commits[REPO]) == n + 1  # adds and deletes in one commit
        assert set(hub.state.repos[REPO + "-gguf"]) == {
            "m-q4_k_m.gguf", "Modelfile", "README.md", "eval_results.json"
        }  # fmt: skip
        commits = [
            json.loads(r["body"].splitlines()[0])["value"]
            for r in hub.state.requests
            if r["path"].endswith(f"/api/models/{REPO}/commit/main")
        ]
        assert commits[-1].get("parentCommit"), "the release is pinned to the revision read"


def test_a_release_landing_after_the_gate_read_wins_and_the_late_one_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    from qmd_ft.config import PublishConfig
    from qmd_ft.publish.hub import HubRegistry
    from qmd_ft.publish.release import execute, plan_release

    def never(*_: object) -> dict:
        raise AssertionError("the deployed eval is published")

    m1, m2, m3 = (make_model(tmp_path, f"m{i}", f"v{i}") for i in (1, 2, 3))
    r1, r2, r3 = (make_results(tmp_path, m, s, f"r{m.name}.json")
                  for m, s in ((m1, 0.5), (m2, 0.6), (m3, 0.7)))  # fmt: skip
    with FakeHub() as hub:
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
        on_hub = HubRegistry(token=TOKEN)
        on_hub.api.endpoint = hub.url
        for reg in (LocalRegistry(tmp_path / "reg"), on_hub):
            rule = PublishConfig(min_ci_lower=-100.0, bootstrap_samples=200)
            execute(plan_release(m1, r1, reg, REPO, rule, never), reg)
            late = plan_release(m2, r2, reg, REPO, rule, never)  # gated against m1
            execute(plan_release(m3, r3, reg, REPO, rule, never), reg)  # lands first
            with pytest.raises(UserError, match="changed since the gate read it"):
                execute(late, reg)
            served = reg.fetch_file(REPO, "config.json")
            assert served is not None and "v3" in served.read_text()


def test_a_failed_gguf_commit_is_finished_by_running_publish_again(tmp_path: Path) -> None:
    m1 = make_model(tmp_path, "m1", "one")
    r1 = make_results(tmp_path, m1, 0.6, "r1.json")
    g = make_gguf_dir(tmp_path / "g", {"m-q4_k_m.gguf": True})
    with FakeHub() as hub:
        env = hub_env(hub, tmp_path)
        hub.state.fail_repos.add(REPO + "-gguf")
        cut = publish("--model", str(m1), "--eval", str(r1), "--gguf", str(g), env=env)
        assert cut.returncode == 1 and "HTTP 500" in cut.stderr, cut.stderr
        assert "config.json" in hub.state.repos[REPO]  # the main commit had landed
        hub.state.fail_repos.clear()
        n = len(hub.state.commits[REPO])
        again = publish("--model", str(m1), "--eval", str(r1), "--gguf", str(g), env=env)
        assert again.returncode == 0, again.stderr
        assert "the deployed model is this candidate" in again.stdout
        assert len(hub.state.commits[REPO]) == n  # the main repo is not committed again
        assert "m-q4_k_m.gguf" in hub.state.repos[REPO + "-gguf"]


def test_only_verified_gguf_files_of_the_manifest_are_published(tmp_path: Path) -> None:
    m1 = make_model(tmp_path, "m1", "one")
    r1 = make_results(tmp_path, m1, 0.6, "r1.json")
    g = make_gguf_dir(tmp_path / "g", {"m-f16.gguf": True, "m-q8_0.gguf": False,
                                       "m-q4_k_m.gguf": None})  # fmt: skip
    (g / ".m-q5_k_m.gguf.partial").write_bytes(b"half")
    (g / "stray.gguf").write_bytes(b"GGUF not exported here")
    reg = tmp_path / "reg"
    out = publish("--model", str(m1), "--eval", str(r1), "--gguf", str(g), "--registry", str(reg))
    assert out.returncode == 0, out.stderr
    assert set(tree(reg / (REPO + "-gguf"))) == {
        "m-f16.gguf", "Modelfile", "README.md", "eval_results.json"
    }  # fmt: skip
    (g / "m-f16.gguf").write_bytes(b"GGUF changed after the export")
    out = publish("--model", str(m1), "--eval", str(r1), "--gguf", str(g), "--registry", str(reg))
    assert out.returncode == 1 and "differs from the export's manifest" in out.stderr
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "m.gguf").write_bytes(b"GGUF")
    out = publish(
        "--model", str(m1), "--eval", str(r1), "--gguf", str(bare), "--registry", str(reg)
    )
    assert out.returncode == 1 and "no GGUF export manifest" in out.stderr


KILLER = textwrap.dedent(
    """
    import os, shutil, signal, sys
    from pathlib import Path
    import qmd_ft.publish.registry as registry

    where, n = sys.argv[1], int(sys.argv[2])
    calls = {"n": 0}

    def dying(real):
        def call(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == n:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)
        return call

    if where == "rename":
        registry.os.rename = dying(os.rename)
    else:
        registry.shutil.copyfile = dying(shutil.copyfile)
    new = Path(sys.argv[4])
    files = {p.name: p for p in new.iterdir()}
    registry.LocalRegistry(Path(sys.argv[3])).upload("o/r", files, "new")
    """
)


@pytest.mark.parametrize(("where", "n"), [("copy", 1), ("copy", 2), ("rename", 1), ("rename", 2)])
def test_kill_9_mid_publish_keeps_one_whole_release(tmp_path: Path, where: str, n: int) -> None:
    root = tmp_path / "reg"
    old, new = tmp_path / "old", tmp_path / "new"
    for d, tag in ((old, b"old"), (new, b"new")):
        d.mkdir()
        for name in ("config.json", "a.safetensors", "b.safetensors"):
            (d / name).write_bytes(tag + name.encode())
    LocalRegistry(root).upload("o/r", {p.name: p for p in old.iterdir()}, "old")
    run = subprocess.run([sys.executable, "-c", KILLER, where, str(n), str(root), str(new)])
    assert run.returncode == -signal.SIGKILL
    reg = LocalRegistry(root)  # a fresh process: the next access recovers
    served = reg.download("o/r")
    assert tree(served) in (tree(old), tree(new))
    assert reg.exists("o/r")
    assert sorted(p.name for p in (root / "o").iterdir()) == [".r.lock", "r"]
    # and a publish after the kill goes through
    reg.upload("o/r", {p.name: p for p in new.iterdir()}, "again", reg.head("o/r"))
    assert tree(reg.download("o/r")) == tree(new)


RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from qmd_ft.errors import UserError
    from qmd_ft.publish.registry import LocalRegistry

    reg = LocalRegistry(Path(sys.argv[1]))
    parent = reg.head("o/r")  # both read the same deployed release
    Path(sys.argv[3]).touch()
    while not Path(sys.argv[4]).exists():
        time.sleep(0.01)
    src = Path(sys.argv[2])
    try:
        reg.upload("o/r", {p.name: p for p in src.iterdir()}, src.name, parent)
    except UserError as e:
        print(e)
        sys.exit(1)
    """
)


def test_two_concurrent_publishes_cannot_both_win(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    dirs = []
    for tag in ("base", "a", "b"):
        d = tmp_path / tag
        d.mkdir()
        for i in range(30):
            (d / f"shard-{i}.safetensors").write_bytes(tag.encode() * 5000)
        (d / "config.json").write_text(tag)
        dirs.append(d)
    LocalRegistry(root).upload("o/r", {p.name: p for p in dirs[0].iterdir()}, "base")
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                RACER,
                str(root),
                str(d),
                str(tmp_path / f"ready-{d.name}"),
                str(go),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for d in dirs[1:]
    ]
    import time

    while not all((tmp_path / f"ready-{d.name}").exists() for d in dirs[1:]):
        time.sleep(0.01)
    go.touch()
    outs = [(p.wait(), p.stdout.read()) for p in procs]  # type: ignore[union-attr]
    codes = sorted(code for code, _ in outs)
    assert codes == [0, 1], outs
    loser = next(text for code, text in outs if code == 1)
    assert "changed since the gate read it" in loser
    winner = dirs[1 + [code for code, _ in outs].index(0)]
    assert tree(LocalRegistry(root).download("o/r")) == tree(winner)


def test_leftovers_of_a_killed_swap_are_recovered(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    src = tmp_path / "m"
    src.mkdir()
    (src / "config.json").write_text("{}")
    LocalRegistry(root).upload("o/r", {"config.json": src / "config.json"}, "one")
    os.rename(root / "o/r", root / "o/.r.old")  # killed between the two renames
    (root / "o/.r.staging-1-x").mkdir()
    reg = LocalRegistry(root)
    assert (
        reg.exists("o/r")
        and reg.head(
            "o/r",
        )
        is not None
    )
    assert sorted(p.name for p in (root / "o").iterdir()) == [".r.lock", "r"]


def test_non_ascii_names_and_a_cut_commit_log_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="expected owner/name"):
        check_repo_name("ownér/name", force=True)
    src = tmp_path / "config.json"
    src.write_text("{}")
    reg = LocalRegistry(tmp_path / "reg")
    reg.upload("o/r", {"config.json": src}, "one")
    log = tmp_path / "reg/o/r/.commits.jsonl"
    log.write_text(log.read_text()[:-10])
    with pytest.raises(UserError, match="unreadable commit log"):
        reg.upload("o/r", {"config.json": src}, "two", reg.head("o/r"))


def test_the_pipeline_gguf_stage_publishes_card_eval_and_verified_files_pinned(
    tmp_path: Path,
) -> None:
    """publish → publish_gguf as the pipeline runs them (stage results stand in for training):
    the twin gets the verified GGUF, its card and the eval; run again after a failed twin
    commit, only the twin is committed."""
    from qmd_ft.config import load_config
    from qmd_ft.pipeline import Pipeline, StageResult

    m1 = make_model(tmp_path, "merged", "one")
    (tmp_path / "run" / "eval").mkdir(parents=True)
    r1 = make_results(tmp_path / "run" / "eval", m1, 0.6, "eval_results.json")
    g = make_gguf_dir(tmp_path / "gguf", {"m-f16.gguf": True, "m-q8_0.gguf": False})
    (g / ".m-f16.gguf.partial").write_bytes(b"half")
    cfg = load_config(None, [f"publish.registry={tmp_path / 'reg'}"])
    reg = LocalRegistry(tmp_path / "reg")
    pipe = Pipeline(cfg, cfg, cfg, "cuda", tmp_path / "run", reg, log=lambda _: None)
    pipe.results = {
        "merge": StageResult("merge", str(m1), ""),
        "eval": StageResult("eval", str(r1.parent), ""),
        "gguf": StageResult("gguf", str(g), ""),
    }
    published = pipe.stage_publish()
    assert published.artifact == f"local:{REPO}", published
    twin = pipe.stage_publish_gguf()
    assert twin.artifact == f"local:{REPO}-gguf", twin
    files = tree(tmp_path / "reg" / (REPO + "-gguf"))
    assert set(files) == {"m-f16.gguf", "Modelfile", "README.md", "eval_results.json"}
    assert b"m-f16.gguf" in files["README.md"]
    main_log = (tmp_path / "reg" / REPO / ".commits.jsonl").read_text().splitlines()
    again = pipe.stage_publish_gguf()  # e.g. a rerun after the twin's commit failed
    assert again.artifact == twin.artifact
    assert (tmp_path / "reg" / REPO / ".commits.jsonl").read_text().splitlines() == main_log


def test_a_pipeline_run_again_after_its_release_is_already_deployed(tmp_path: Path) -> None:
    """compare → publish → publish_gguf as the pipeline runs them, twice with nothing changed:
    the second verdict says the deployed model is this candidate (not a refusal for a delta of
    0 against itself), passes, and neither repo gets a new commit; a changed candidate is
    still judged against the deployed one."""
    from qmd_ft.config import load_config
    from qmd_ft.pipeline import Pipeline, StageResult, gate_refused

    reg = LocalRegistry(tmp_path / "reg")
    cfg = load_config(None, [f"publish.registry={tmp_path / 'reg'}"])
    g = make_gguf_dir(tmp_path / "gguf", {"m-f16.gguf": True})

    def run(model: Path, reward: float) -> dict[str, StageResult]:
        out = tmp_path / "run"
        (out / "eval").mkdir(parents=True, exist_ok=True)
        r = make_results(out / "eval", model, reward, "eval_results.json")
        pipe = Pipeline(cfg, cfg, cfg, "cuda", out, reg, log=lambda _: None)
        pipe.results = {
            "merge": StageResult("merge", str(model), ""),
            "eval": StageResult("eval", str(r.parent), ""),
            "gguf": StageResult("gguf", str(g), ""),
        }
        done = {}
        for name in ("compare", "publish", "publish_gguf"):
            done[name] = getattr(pipe, f"stage_{name}")()
            pipe.record(done[name])
        return done

    def logs() -> list[str]:
        return [(tmp_path / "reg" / repo / ".commits.jsonl").read_text()
                for repo in (REPO, REPO + "-gguf")]  # fmt: skip

    m1 = make_model(tmp_path, "merged", "one")
    first = run(m1, 0.6)
    assert first["publish"].artifact == f"local:{REPO}" and not gate_refused(list(first.values()))
    released = logs()

    again = run(m1, 0.6)
    verdict = again["compare"].verdict
    assert verdict is not None and verdict.passed and verdict.deployed
    assert [(r.name, r.status) for r in verdict.rules] == [("already_deployed", "pass")]
    assert "the deployed model is this candidate" in verdict.rules[0].reason
    assert again["compare"].key.startswith("ALREADY DEPLOYED")
    assert not gate_refused(list(again.values()))  # `qmd-ft pipeline` exits 0
    head = LocalRegistry(tmp_path / "reg").head(REPO)
    assert again["publish"].key == f"already published (commit {head})"
    assert again["publish_gguf"].key.startswith("already published (commit ")
    assert logs() == released  # no new commit anywhere
    saved = json.loads((tmp_path / "run/compare/verdict.json").read_text())
    assert saved["deployed"] is True and saved["passed"] is True

    shutil.rmtree(tmp_path / "reg" / (REPO + "-gguf"))  # a twin commit that never landed
    finished = run(m1, 0.6)
    assert finished["publish"].key == f"already published (commit {head})"
    assert finished["publish_gguf"].artifact == f"local:{REPO}-gguf"
    assert not finished["publish_gguf"].key.startswith("already")
    assert logs()[0] == released[0]
    released = logs()

    m2 = make_model(tmp_path, "merged2", "two")  # another model, no better: refused as before
    changed = run(m2, 0.6)
    refused = changed["compare"].verdict
    assert refused is not None and not refused.deployed and not refused.passed
    assert refused.rule("rubric_vs_deployed").numbers.mean_delta == 0.0  # type: ignore[union-attr]
    assert changed["publish"].key == "skipped: gate refused" and gate_refused(
        list(changed.values())
    )
    assert logs() == released


@pytest.mark.parametrize(
    "manifest",
    ['{"kind": "gguf", "files": [{"file": "m.gg', '["gguf"]',
     '{"kind": "gguf", "files": [3, {"file": "../m1/config.json", "verified": true}]}'],
)  # fmt: skip
def test_a_damaged_export_manifest_publishes_nothing(tmp_path: Path, manifest: str) -> None:
    m1 = make_model(tmp_path, "m1", "one")
    r1 = make_results(tmp_path, m1, 0.6, "r1.json")
    g = make_gguf_dir(tmp_path / "g", {"m.gguf": True})
    (g / "manifest.json").write_text(manifest)
    reg = tmp_path / "reg"
    out = publish("--model", str(m1), "--eval", str(r1), "--gguf", str(g), "--registry", str(reg))
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert not reg.exists()


def test_network_down_mid_publish_is_one_line(tmp_path: Path) -> None:
    m1 = make_model(tmp_path, "m1", "one")
    r1 = make_results(tmp_path, m1, 0.6, "r1.json")
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "h"),
           "HF_HUB_ETAG_TIMEOUT": "1", "HF_HUB_DOWNLOAD_TIMEOUT": "1"}  # fmt: skip
    out = publish("--model", str(m1), "--eval", str(r1), env=env)
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "cannot reach http://127.0.0.1:9" in out.stderr and "run the same command again" in (
        out.stderr
    )
