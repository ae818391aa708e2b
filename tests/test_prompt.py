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
