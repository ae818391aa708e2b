"""cuda backend merge and generation on the tiny model (CPU)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("peft")

import torch
from cuda_support import EXAMPLES, THINK_ANSWER, THINK_QUERY, memorized_model
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from qmd_ft.backends.cuda import BACKEND
from qmd_ft.backends.cuda.generate import cut_at_stop
from qmd_ft.config import EvalConfig
from qmd_ft.prompt import IM_END, render_prompt


@pytest.fixture(scope="module")
def memorized(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return memorized_model(tmp_path_factory, tiny_model_dir)


def _random_adapter(model_dir: Path, out: Path, seed: int, targets: list[str]) -> Path:
    """A LoRA adapter with random (non-zero) A and B, as if trained, saved in PEFT format."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(out)
    return out


def test_merge_gives_the_logits_of_base_plus_adapters(tiny_model_dir: Path, tmp_path: Path) -> None:
    sft = _random_adapter(tiny_model_dir, tmp_path / "sft", 1, ["q_proj", "k_proj", "down_proj"])
    grpo = _random_adapter(tiny_model_dir, tmp_path / "grpo", 2, ["q_proj", "v_proj"])
    out = tmp_path / "merged"
    r = subprocess.run(
        [
            sys.executable, "-m", "qmd_ft", "merge", "--backend", "cuda", "--base",
            str(tiny_model_dir), "--adapter", str(sft), "--adapter", str(grpo), "-o", str(out),
        ],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]

    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = torch.tensor([tokenizer(render_prompt(EXAMPLES[0][0]) + EXAMPLES[0][1])["input_ids"]])
    # Reference: both adapters active and unmerged on the base (LoRA deltas add up per layer).
    reference = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), sft, adapter_name="sft"
    )
    reference.load_adapter(grpo, adapter_name="grpo")
    reference.base_model.set_adapter(["sft", "grpo"])
    merged = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        want, got, plain = reference(ids).logits, merged(ids).logits, base(ids).logits
    assert merged.dtype == torch.float32
    assert (want - plain).abs().max() > 1e-2  # the adapters matter...
    assert (got - want).abs().max() < 1e-4  # ...and the merged model has exactly their effect

    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(tiny_model_dir).chat_template
    assert tokenizer.eos_token == IM_END
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "merged"
    assert manifest["parents"] == [str(tiny_model_dir), str(sft), str(grpo)]

    gen = EvalConfig(max_new_tokens=12, batch_size=2)
    prompts = [render_prompt(q) for q, _ in EXAMPLES[:3]]
    from_adapters = BACKEND.generator(str(tiny_model_dir), [str(sft), str(grpo)], gen, "cpu")
    assert from_adapters(prompts) == BACKEND.generator(str(out), [], gen, "cpu")(prompts)


def test_greedy_generation_stops_at_im_end_and_strips_think_blocks(memorized: Path) -> None:
    queries = [EXAMPLES[0][0], THINK_QUERY, "an unseen and rather longer query about gardening"]
    prompts = [render_prompt(q) for q in queries]
    batched = BACKEND.generator(
        str(memorized), [], EvalConfig(max_new_tokens=120, batch_size=3), "cpu"
    )(prompts)
    assert batched[0] == EXAMPLES[0][1]  # the whole answer, and nothing after <|im_end|>
    assert batched[1] == THINK_ANSWER  # the think block is gone
    assert not any(IM_END in t or "<think>" in t for t in batched)
    # Left padding: a prompt's completion does not depend on the others in its batch.
    one_by_one = BACKEND.generator(
        str(memorized), [], EvalConfig(max_new_tokens=120, batch_size=1), "cpu"
    )(prompts)
    assert one_by_one == batched


def test_sampled_generation_is_seeded(memorized: Path) -> None:
    prompts = [render_prompt(q) for q, _ in EXAMPLES[:4]]
    sampled = EvalConfig(max_new_tokens=24, batch_size=4, temperature=1.5, seed=3)
    generate = BACKEND.generator(str(memorized), [], sampled, "cpu")
    first = generate(prompts)
    assert generate(prompts) == first
    greedy = BACKEND.generator(str(memorized), [], EvalConfig(max_new_tokens=24), "cpu")(prompts)
    assert first != greedy


def test_checkpoint_sampling_defaults_do_not_leak(memorized: Path, tmp_path: Path) -> None:
    # Qwen3 ships do_sample/temperature/top_p/top_k defaults; top_k 1 would make sampling greedy.
    shutil.copytree(memorized, tmp_path / "m", ignore=shutil.ignore_patterns("checkpoint-*"))
    path = tmp_path / "m" / "generation_config.json"
    defaults = {"do_sample": True, "temperature": 0.6, "top_p": 0.95, "top_k": 1}
    path.write_text(json.dumps({**json.loads(path.read_text()), **defaults}))
    prompts = [render_prompt(q) for q, _ in EXAMPLES[:4]]
    for gen in (EvalConfig(max_new_tokens=24), EvalConfig(max_new_tokens=24, temperature=1.0)):
        want = BACKEND.generator(str(memorized), [], gen, "cpu")(prompts)
        assert BACKEND.generator(str(tmp_path / "m"), [], gen, "cpu")(prompts) == want


def test_cut_at_stop() -> None:
    assert cut_at_stop([5, 6, 7, 2, 8, 9], {2, 3}) == [5, 6, 7]
    assert cut_at_stop([5, 6], {2}) == [5, 6]


def test_local_model_refs_are_told_from_hub_ids(tmp_path: Path, monkeypatch) -> None:
    from qmd_ft.backends.cuda.loading import check_model_ref
    from qmd_ft.model_ref import is_local_ref

    monkeypatch.chdir(tmp_path)
    for ref in ("/abs", "./rel", "../up", "~/m", ".", "a/b/c"):
        assert is_local_ref(ref), ref
    for ref in ("Qwen/Qwen3-1.7B", "gpt2", "outputs/merged"):  # hub-shaped, absent here
        assert not is_local_ref(ref), ref
        assert check_model_ref(ref) == ref
    (tmp_path / "outputs" / "merged").mkdir(parents=True)
    assert is_local_ref("outputs/merged")  # present on disk: a path after all


def test_eval_and_merge_name_a_missing_or_non_model_path(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "qmd_ft", *args], capture_output=True, text=True, cwd=tmp_path
        )

    (tmp_path / "queries.txt").write_text("docker volumes\n")
    not_model = tmp_path / "notes"
    not_model.mkdir()
    for model in ("/nonexistent", str(not_model)):
        why = "not found; check the path" if model == "/nonexistent" else "not a model directory"
        for r in (
            run("eval", "--backend", "cuda", "--model", model, "--queries", "queries.txt"),
            run("merge", "--backend", "cuda", "--base", model, "--adapter", "a", "-o", "out"),
        ):
            assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
            assert r.stderr.startswith(f"error: model {model}: {why}"), r.stderr
            assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_grpo_starts_from_base_plus_model_adapters(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`model.adapters` are stacked on the base for SFT and GRPO, as the mlx backend does."""
    from qmd_ft.backends.cuda.grpo import load_policy
    from qmd_ft.backends.cuda.loading import load_merged
    from qmd_ft.config import load_config

    extra = _random_adapter(tiny_model_dir, tmp_path / "extra", 3, ["q_proj", "o_proj"])
    sft = _random_adapter(tiny_model_dir, tmp_path / "sft", 4, ["v_proj"])
    cfg = load_config(
        None,
        {
            "model": {"base": str(tiny_model_dir), "adapters": [str(extra)], "sft": str(sft)},
            "lora": {"rank": 4, "target_modules": ["q_proj", "v_proj"]},
        },
    )
    policy, parents = load_policy(cfg, torch.float32)
    assert parents == [str(tiny_model_dir), str(extra), str(sft)]
    want = load_merged(str(tiny_model_dir), [str(extra), str(sft)], torch.float32).state_dict()
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    got = policy.state_dict()
    name = "model.layers.0.self_attn.o_proj.weight"  # only the extra adapter touches o_proj
    assert not torch.equal(got[name], plain[name])
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_sft_trains_on_base_plus_model_adapters(tiny_model_dir: Path, tmp_path: Path) -> None:
    from cuda_support import make_config, prepared

    from qmd_ft.backend import TrainRequest
    from qmd_ft.backends.cuda.loading import load_merged
    from qmd_ft.backends.cuda.sft import build_sft

    extra = _random_adapter(tiny_model_dir, tmp_path / "extra", 3, ["q_proj", "o_proj"])
    data = prepared(tmp_path)
    cfg = make_config(tiny_model_dir, tmp_path / "sft", data, lora=None)
    cfg.model.adapters = [str(extra)]
    trainer = build_sft(TrainRequest(cfg, data, tmp_path / "sft", device="cpu")).trainer
    want = load_merged(str(tiny_model_dir), [str(extra)], torch.float32).state_dict()
    got = trainer.model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
