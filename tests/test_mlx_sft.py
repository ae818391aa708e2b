"""mlx backend SFT through mlx-lm's tuner: completion-only loss, LoRA/full, schedule, resume."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
pytest.importorskip("mlx_lm")

from qmd_ft.backend import TrainRequest  # noqa: E402
from qmd_ft.backends.mlx.dataset import pad_batch, read_split, tokenize  # noqa: E402
from qmd_ft.backends.mlx.models import load_stack  # noqa: E402
from qmd_ft.backends.mlx.optim import lr_schedule  # noqa: E402
from qmd_ft.backends.mlx.sft import completion_loss, sft  # noqa: E402
from qmd_ft.config import TrainingConfig, load_config  # noqa: E402
from qmd_ft.data.prepare import prepare  # noqa: E402
from qmd_ft.errors import UserError  # noqa: E402
from qmd_ft.tiny_model import BUILTIN_EXAMPLES  # noqa: E402


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A prepared split of the twelve hand-written examples (ten train, two val)."""
    src = tmp_path / "examples.jsonl"
    src.write_text(
        "".join(json.dumps({"input": q, "output": c}) + "\n" for q, c in BUILTIN_EXAMPLES)
    )
    return prepare([src], tmp_path / "data", None, val_fraction=0.2, seed=0).out_dir


def request(
    model: Path, data: Path, out: Path, steps: int, lora: bool = True, **training
) -> TrainRequest:
    """A TrainRequest for a short SFT run on the tiny model."""
    overrides = {
        "model": {"base": str(model), "output": str(out)},
        "training": {
            "batch_size": 4,
            "learning_rate": 1e-2,
            "logging_steps": 1,
            "max_length": 256,
            **training,
        },
        "lora": {"rank": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj", "up_proj"]}
        if lora
        else None,
    }
    return TrainRequest(load_config(None, overrides), data, out, max_steps=steps)


def train_loss(model_dir: Path, data: Path, adapters: list[str]) -> float:
    """Completion-token loss of the whole train split under base + adapters."""
    model, tokenizer, _ = load_stack(str(model_dir), adapters)
    batch, lengths = pad_batch(tokenize(tokenizer, read_split(data, "train"), 256))
    return completion_loss(model, batch, lengths)[0].item()


def test_prompt_tokens_are_masked_from_the_loss(tiny_model_dir: Path, data_dir: Path) -> None:
    model, tokenizer, _ = load_stack(str(tiny_model_dir))
    records = read_split(data_dir, "train")[:3]
    examples = tokenize(tokenizer, records, 256)
    for (ids, offset), rec in zip(examples, records, strict=True):
        assert ids[:offset] == tokenizer.encode(rec["prompt"])
        assert tokenizer.decode(ids[offset:]) == rec["completion"]

    batch, lengths = pad_batch(examples)
    loss, ntoks = completion_loss(model, batch, lengths)
    assert ntoks.item() == sum(len(ids) - offset for ids, offset in examples)

    # The same loss by hand: cross-entropy of each completion token only.
    logps = np.array(mx.log(mx.softmax(model(batch[:, :-1]).astype(mx.float32), axis=-1)))
    token_losses = [
        -logps[row, t - 1, ids[t]]
        for row, (ids, offset) in enumerate(examples)
        for t in range(offset, len(ids))
    ]
    assert loss.item() == pytest.approx(np.mean(token_losses), rel=1e-5)

    # Changing prompt tokens' targets cannot change it: only their context changes, and
    # cutting the prompt off entirely is not the same loss, so compare a padding change.
    padded = mx.concatenate([batch, mx.full((batch.shape[0], 7), 5, dtype=batch.dtype)], axis=1)
    assert completion_loss(model, padded, lengths)[0].item() == pytest.approx(loss.item(), rel=1e-6)


def test_lora_sft_lowers_loss_and_saves_peft_adapter(
    tiny_model_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    out = sft(request(tiny_model_dir, data_dir, tmp_path / "out", steps=8, save_steps=4))

    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 8 and losses[-1] < losses[0]
    assert any("eval_loss" in r for r in log)
    assert train_loss(tiny_model_dir, data_dir, [str(out)]) < train_loss(
        tiny_model_dir, data_dir, []
    )

    config = json.loads((out / "adapter_config.json").read_text())
    assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", 8, 16)
    weights = mx.load(str(out / "adapter_model.safetensors"))
    assert all(k.startswith("base_model.model.model.layers.") for k in weights)
    assert {"tokenizer.json", "checkpoint-4", "checkpoint-8", "trainer_state.json"} <= {
        p.name for p in out.iterdir()
    }
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "sft-adapter" and manifest["metrics"]["global_step"] == 8


def test_full_finetuning_saves_an_hf_model(
    tiny_model_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    out = sft(request(tiny_model_dir, data_dir, tmp_path / "out", steps=2, lora=False))
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    trained = mx.load(str(out / "model.safetensors"))
    base = mx.load(str(tiny_model_dir / "model.safetensors"))
    assert trained.keys() == base.keys()
    assert not mx.allclose(
        trained["model.layers.0.mlp.up_proj.weight"], base["model.layers.0.mlp.up_proj.weight"]
    )
    assert train_loss(out, data_dir, []) < train_loss(tiny_model_dir, data_dir, [])


def test_resume_continues_to_the_same_weights(
    tiny_model_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    whole = sft(request(tiny_model_dir, data_dir, tmp_path / "whole", steps=4, save_steps=2))

    cut = tmp_path / "cut"
    shutil.copytree(whole, cut)
    # As if killed after the step-2 checkpoint: checkpoint-4 and the final outputs (written only
    # at the end) do not exist yet, so they must come from the resumed run, not from the copy.
    # The log keeps its later lines: resuming must drop them and log those steps again.
    for path in cut.iterdir():
        if path.name not in ("checkpoint-2", "log.jsonl"):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    with pytest.raises(UserError, match="--resume"):
        sft(request(tiny_model_dir, data_dir, cut, steps=4, save_steps=2))
    req = request(tiny_model_dir, data_dir, cut, steps=4, save_steps=2)
    sft(TrainRequest(req.config, req.data_dir, cut, max_steps=4, resume=True))

    a = mx.load(str(whole / "adapter_model.safetensors"))
    b = mx.load(str(cut / "adapter_model.safetensors"))
    assert all(mx.allclose(a[k], b[k], atol=1e-6).item() for k in a)
    steps = [json.loads(line)["step"] for line in (cut / "log.jsonl").read_text().splitlines()]
    assert [s for s in steps] == [1, 2, 3, 4, 4]  # four loss records and the final eval


def test_a_damaged_split_stops_with_file_and_line(data_dir: Path) -> None:
    train = data_dir / "train.jsonl"
    lines = train.read_text().splitlines()
    lines[2] = json.dumps({"prompt": "p", "text": "t"})
    train.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=rf"^{train}:3: missing key\(s\) 'completion';"):
        read_split(data_dir, "train")
    train.write_text("\n".join([*lines[:4], "{oops"]) + "\n")
    with pytest.raises(UserError, match=rf"^{train}:3: .*\(and 1 more bad line\(s\)\)"):
        read_split(data_dir, "train")


def test_resume_refuses_another_step_total(
    tiny_model_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    sft(request(tiny_model_dir, data_dir, out, steps=2, save_steps=2))
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state == {"global_step": 2, "max_steps": 2}
    req = request(tiny_model_dir, data_dir, out, steps=3, save_steps=2)
    with pytest.raises(UserError, match=r"planned for 2 steps.*--max-steps 2"):
        sft(TrainRequest(req.config, req.data_dir, out, max_steps=3, resume=True))
    assert not (out / "checkpoint-3").exists()


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant", "constant_with_warmup"])
def test_lr_schedule_matches_transformers(kind: str) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    training = TrainingConfig(learning_rate=2e-4, warmup_ratio=0.1, lr_scheduler=kind)
    total = 23
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    warmup = math.ceil(0.1 * total)
    scheduler = transformers.get_scheduler(
        kind, opt, num_warmup_steps=warmup, num_training_steps=total
    )
    schedule = lr_schedule(training, total)
    for step in range(total):
        assert schedule(mx.array(step)).item() == pytest.approx(
            scheduler.get_last_lr()[0], abs=1e-9
        )
        opt.step()
        scheduler.step()
