"""The prompt format is exactly QMD's, rendered like Qwen3's template."""

from qmd_ft import prompt


def test_generation_prompt() -> None:
    assert prompt.render_prompt("  docker volumes ") == (
        "<|im_start|>user\n/no_think Expand this search query: docker volumes<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_training_text_has_no_think_block() -> None:
    text = prompt.render_example("q", "lex: a b\nvec: c d e")
    assert "<think>" not in text
    assert text.endswith("<|im_start|>assistant\nlex: a b\nvec: c d e<|im_end|>\n")


def test_output_order_hyde_lex_vec_stable_within_type() -> None:
    out = prompt.format_output([("vec", "v1"), ("lex", "l1"), ("hyde", "h"), ("lex", "l2")])
    assert out == "hyde: h\nlex: l1\nlex: l2\nvec: v1"


def test_strip_think_removes_closed_blocks_only() -> None:
    assert prompt.strip_think("<think>\nplan\n</think>\n\nlex: a") == "lex: a"
    assert prompt.strip_think("lex: a\n<think>x</think>vec: b<think>y</think>") == "lex: a\nvec: b"
    # The budget ran out mid-thought: the text stays, and the rubric scores it a failure.
    assert prompt.strip_think("lex: a\n<think>never closed") == "lex: a\n<think>never closed"
    assert prompt.strip_think("  lex: a\n") == "lex: a"
