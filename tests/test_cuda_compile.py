"""Compiled decode steps stay compiled across decoders, shapes and samplings in one process.

Torch compiles per code object and, past `recompile_limit`, silently runs a function eagerly.
A process that evaluates and then runs GRPO builds several decoders, each with its own shapes
and sampling; they must each compile once and then only replay. Dynamo's own counters tell:
`unique_graphs` grows by one per compiled step and not at all on a replay. The step is
compiled with the eager backend here (the graph capture and its guards are dynamo's, whatever
the backend: a CPU cannot run CUDA graphs), with the limit lowered to 1 so that the first
recompile would already fall back.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers")

import torch._dynamo
from torch._dynamo.utils import counters
from transformers import AutoModelForCausalLM, AutoTokenizer

from qmd_ft.backends.cuda import fastgen
from qmd_ft.backends.cuda.fastgen import Sampling, StaticDecoder
from qmd_ft.prompt import render_prompt


@pytest.mark.slow
def test_each_decoder_shape_and_sampling_compiles_once(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        fastgen, "COMPILE_OPTIONS", {"backend": "eager", "fullgraph": False, "dynamic": False}
    )
    torch._dynamo.reset()
    counters.clear()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = [tokenizer(render_prompt(q))["input_ids"] for q in ("vim", "rust error handling")]
    pad = tokenizer.pad_token_id
    eval_model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()  # GRPO's twin
    calls = [  # (decoder, prompts, sampling): eval greedy at two batch sizes, GRPO sampled
        ("eval", ids, Sampling()),
        ("eval", ids[:1], Sampling()),
        ("grpo", ids, Sampling(temperature=1.0, top_p=0.9)),
    ]
    with torch._dynamo.config.patch(recompile_limit=1):
        decoders = {
            "eval": StaticDecoder(eval_model, compile=True),
            "grpo": StaticDecoder(policy, compile=True),
        }
        first = []
        for name, prompts, sampling in calls:
            torch.manual_seed(0)
            first.append(decoders[name].generate(prompts, 6, sampling, [], pad))
        compiled = counters["stats"]["unique_graphs"]
        again = []
        for name, prompts, sampling in calls:
            torch.manual_seed(0)
            again.append(decoders[name].generate(prompts, 6, sampling, [], pad))
    assert compiled == len(calls)  # one graph per (decoder, shape, sampling), none fell back
    assert counters["stats"]["unique_graphs"] == compiled  # the second round only replayed
    assert again == first
    eager = StaticDecoder(eval_model).generate(ids, 6, Sampling(), [], pad)
    assert first[0] == eager
