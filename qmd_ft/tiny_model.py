"""A tiny Qwen3 model and tokenizer, built offline in seconds, for tests, demos and exporters.

`build_tiny_model` writes a directory that every part of qmd-ft can treat like Qwen/Qwen3-1.7B:
transformers' Auto classes, `mlx_lm.load` and a GGUF writer load it, and its chat template
renders `qmd_ft.prompt.render_prompt` exactly. Its weights are random (it knows nothing), it is
small enough that a CPU trains it from scratch in minutes, and the same seed and data give
byte-identical files (with the same `tokenizers`, which serialises tokenizer.json), so a test
can hash it and a benchmark can rebuild it anywhere.

Choices, and why:

- Every file mirrors the real Qwen3-1.7B checkpoint key for key and is written here as JSON,
  not by transformers' `save_pretrained`: loaders and exporters are tested against the real
  checkpoint's files, and the bytes then do not change with the installed transformers.
- Weights come from NumPy's legacy `RandomState`, whose streams NumPy keeps fixed across
  releases, drawn from N(0, 0.02) like transformers' `initializer_range` init, norms at 1.
  They are stored in float32 so backends can be compared to 1e-4 without rounding noise, and
  building imports neither torch nor transformers.
- The tokenizer is Qwen2/3's pipeline (NFC, Qwen's split regex, byte-level BPE without a prefix
  space), so a GGUF file may honestly say pre-tokenizer "qwen2"; only the vocabulary is small.
  It is learnt from the project's own examples rendered in the prompt format (`data/*.jsonl`,
  `evals/queries.txt`, plus a built-in corpus that is always added, so the vocabulary fills
  to `vocab_size` even with no data): prompts come out short and the fixed text
  ("/no_think Expand this search query:", "lex:") takes few tokens, as with Qwen's vocabulary.
- The five special tokens follow the learnt vocabulary in Qwen's order. `<think>`/`</think>`
  are added tokens that are never split but are not "special", exactly as in Qwen3, so
  `skip_special_tokens=True` keeps them. eos is `<|im_end|>`, pad `<|endoftext|>`, no bos.
- The chat template is Qwen3's, verbatim (TRL ships the same text and recognises the model
  as Qwen3 by it, e.g. to swap in its training template).
- generation_config.json has Qwen3's stop ids but none of its sampling defaults, so `generate`
  on the tiny model is greedy and deterministic unless a caller asks otherwise.

What qmd_ft trains on: `render_prompt(q) + render_completion(c)`, the answer right after
`<|im_start|>assistant\\n` with no think block. Qwen3's template, given the same conversation as
messages, puts an empty `<think>\\n\\n</think>\\n\\n` before a final assistant turn, so the
template is used for prompts only (where it agrees with `render_prompt`), never for training
text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qmd_ft.prompt import (
    ENDOFTEXT,
    IM_END,
    IM_START,
    SPECIAL_TOKENS,
    THINK_CLOSE,
    THINK_OPEN,
    render_example,
    render_prompt,
)
from qmd_ft.resources import defaults_root

if TYPE_CHECKING:
    from tokenizers import Tokenizer

TINY_SHAPE: dict[str, Any] = {
    # 4 heads x head_dim 32: attention width equals hidden size, as in Qwen3-1.7B (16 x 128).
    "hidden_size": 128,
    # 3x hidden, Qwen3-1.7B's ratio (6144 / 2048).
    "intermediate_size": 384,
    # Enough layers to exercise per-layer code (LoRA targets, KV caches); still ~1M parameters.
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    # 2 KV heads: grouped-query attention with Qwen3-1.7B's 2:1 ratio, so repeat-KV paths run.
    "num_key_value_heads": 2,
    "head_dim": 32,
    # QMD prompts and answers are a few hundred tokens; a short context keeps the KV caches
    # that llama.cpp and friends allocate by default small.
    "max_position_embeddings": 2048,
    # Qwen3's RoPE base and norm epsilon, so the numerics follow the real model's code paths.
    "rope_theta": 1_000_000,
    "rms_norm_eps": 1e-6,
    # Tied like Qwen3-1.7B, so exporters see the tied-embedding layout they will meet there.
    "tie_word_embeddings": True,
}

INIT_STD = 0.02
"""Standard deviation of the random weights: transformers' default `initializer_range`."""

MAX_SEED = 2**32 - 1
"""The largest weights seed numpy's RandomState takes (seeds are 0..2**32-1)."""

DEFAULT_DATA_DIR = defaults_root() / "data"
"""The project's `data/` folder; `evals/queries.txt` is read from beside it."""

QWEN2_SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
"""The pre-tokenizer split of Qwen2 and Qwen3's tokenizer.json."""

QWEN3_CHAT_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}"""  # noqa: E501 (verbatim)
"""The chat template of Qwen/Qwen3-1.7B, verbatim."""

BUILTIN_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "how to configure authentication",
        "hyde: Authentication is configured in the settings file: choose a provider such as "
        "OAuth, SAML or LDAP, set the client id and secret, and restart the server.\n"
        "lex: authentication configuration\nlex: auth settings provider setup\n"
        "vec: how do I set up user authentication for my application\n"
        "vec: steps to configure login with OAuth or single sign-on",
    ),
    (
        "rust error handling",
        "hyde: Rust handles recoverable errors with the Result type and the ? operator, and "
        "unrecoverable ones with panic!. Libraries like anyhow and thiserror reduce boilerplate.\n"
        "lex: rust Result error handling\nlex: rust question mark operator\n"
        "vec: what is the idiomatic way to handle errors in Rust programs\n"
        "vec: how do Result, Option and panic differ in Rust",
    ),
    (
        "meeting notes from last week",
        "hyde: Meeting notes, Tuesday: reviewed the quarterly roadmap, agreed to ship the search "
        "feature first, and assigned follow-up tasks to the design and backend teams.\n"
        "lex: meeting notes last week\nlex: weekly team meeting summary\n"
        "vec: notes and action items from the team meeting held last week\n"
        "vec: what was decided in recent project meetings",
    ),
    (
        "sourdough starter feeding schedule",
        "hyde: Feed a sourdough starter once or twice a day with equal weights of flour and "
        "water; it is ready to bake with when it doubles within four to eight hours.\n"
        "lex: sourdough starter feeding\nlex: levain flour water ratio\n"
        "vec: how often should I feed my sourdough starter and with how much flour\n"
        "vec: keeping a sourdough culture active at room temperature or in the fridge",
    ),
    (
        "kubernetes pod restart loop",
        "hyde: A pod in CrashLoopBackOff keeps restarting because its container exits; check "
        "kubectl logs --previous and kubectl describe pod for the exit code and events.\n"
        "lex: CrashLoopBackOff kubernetes\nlex: pod keeps restarting kubectl logs\n"
        "vec: why does my kubernetes pod keep restarting after deployment\n"
        "vec: debugging a container that crashes repeatedly in a cluster",
    ),
    (
        "Marie Curie discoveries",
        "hyde: Marie Curie discovered polonium and radium in 1898 with Pierre Curie, coined the "
        "word radioactivity, and won Nobel Prizes in Physics (1903) and Chemistry (1911).\n"
        "lex: Marie Curie radium polonium\nlex: Curie Nobel Prize radioactivity\n"
        "vec: what did Marie Curie discover and why was it important\n"
        "vec: scientific achievements of Marie Curie in physics and chemistry",
    ),
    (
        "python async database queries",
        "hyde: Use an async driver such as asyncpg or aiosqlite with asyncio: await "
        "connection.fetch(query) inside an async function and run it with asyncio.run().\n"
        "lex: python asyncio database\nlex: asyncpg aiosqlite async query\n"
        "vec: how to run database queries asynchronously in Python\n"
        "vec: using async and await with SQL drivers for concurrent requests",
    ),
    (
        "journal entry about moving to Berlin",
        "hyde: March 3. First week in Berlin: the flat in Neukölln is small but bright, the "
        "U-Bahn is easy, and I finally registered my address at the Bürgeramt.\n"
        "lex: moving to Berlin journal\nlex: Berlin relocation diary entry\n"
        "vec: personal diary entries written after relocating to Berlin\n"
        "vec: my notes about settling into a new city in Germany",
    ),
    (
        "git rebase vs merge",
        "hyde: git merge keeps history as it happened with a merge commit, while git rebase "
        "replays your commits onto another branch for a linear history; never rebase shared "
        "branches.\n"
        "lex: git rebase merge difference\nlex: linear history git rebase\n"
        "vec: when should I use git rebase instead of git merge\n"
        "vec: pros and cons of rebasing versus merging branches",
    ),
    (
        "climate change effects on coral reefs",
        "hyde: Warmer oceans cause coral bleaching: stressed corals expel their algae, turn "
        "white and may die; acidification also slows reef growth, as seen on the Great Barrier "
        "Reef.\n"
        "lex: coral bleaching ocean warming\nlex: reef acidification climate\n"
        "vec: how does climate change damage coral reef ecosystems\n"
        "vec: impact of rising sea temperatures on the Great Barrier Reef",
    ),
    (
        "budget spreadsheet template 2024",
        "hyde: A monthly budget spreadsheet lists income at the top, then fixed costs (rent, "
        "insurance), variable spending (groceries, transport) and savings goals, with totals.\n"
        "lex: budget spreadsheet template\nlex: monthly expenses tracker 2024\n"
        "vec: a simple spreadsheet to plan my monthly budget and savings\n"
        "vec: how to track personal income and expenses in Excel or Google Sheets",
    ),
    (
        "vim search and replace",
        "hyde: In Vim, :%s/old/new/g replaces every match in the file; add c to confirm each "
        "one, and use \\< and \\> to match whole words only.\n"
        "lex: vim substitute command\nlex: vim find replace regex\n"
        "vec: how do I search and replace text across a file in Vim\n"
        "vec: using the substitute command with patterns and flags in vi",
    ),
)
"""Hand-written (query, completion) pairs in QMD's format, always part of the tokenizer corpus.

They make the build work with no data at all, and give the BPE trainer enough distinct text to
learn a full 1,024-token vocabulary from.
"""

ADDED_NOT_SPECIAL = (THINK_OPEN, THINK_CLOSE)
"""Added (never split) but not special, as in Qwen3: `skip_special_tokens` keeps them."""

_SPECIAL_SPLIT = re.compile("|".join(re.escape(token) for token in SPECIAL_TOKENS))


def build_tiny_model(
    out_dir: Path,
    seed: int = 0,
    data_dir: Path | None = None,
    vocab_size: int = 1024,
    **shape: Any,
) -> Path:
    """Write a tiny random Qwen3 checkpoint (weights, tokenizer, configs) to `out_dir`.

    `data_dir` is the folder of `*.jsonl` examples (default: this project's `data/`); the
    tokenizer also learns from `evals/queries.txt` beside it. `seed` only moves the weights.
    `shape` overrides keys of `TINY_SHAPE`. The tokenizer has exactly `vocab_size` tokens
    unless the corpus is too small to learn that many merges; the embedding always has
    `vocab_size` rows. Returns `out_dir`.
    """
    unknown = sorted(set(shape) - set(TINY_SHAPE))
    if unknown:
        raise TypeError(f"unknown shape keys {unknown}; known: {sorted(TINY_SHAPE)}")
    if not 0 <= seed <= MAX_SEED:  # numpy's limit, checked before anything is written
        raise ValueError(f"seed must be between 0 and {MAX_SEED} (got {seed})")
    min_vocab = 256 + len(SPECIAL_TOKENS)
    if vocab_size <= min_vocab:
        raise ValueError(f"vocab_size must exceed {min_vocab} (256 bytes + special tokens)")
    dims = {**TINY_SHAPE, **shape}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = DEFAULT_DATA_DIR if data_dir is None else Path(data_dir)

    tokenizer = train_tokenizer(training_texts(data_dir), vocab_size)
    ids = {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS}
    tokenizer.save(str(out_dir / "tokenizer.json"))
    _write_json(out_dir / "tokenizer_config.json", _tokenizer_config(ids, dims))
    _write_json(out_dir / "special_tokens_map.json", _special_tokens_map())
    _write_json(out_dir / "config.json", _model_config(dims, vocab_size, ids))
    _write_json(
        out_dir / "generation_config.json",
        {
            "bos_token_id": ids[ENDOFTEXT],
            "eos_token_id": [ids[IM_END], ids[ENDOFTEXT]],
            "pad_token_id": ids[ENDOFTEXT],
        },
    )
    _save_weights(out_dir / "model.safetensors", dims, vocab_size, seed)
    return out_dir


def training_texts(data_dir: Path) -> list[str]:
    """The tokenizer corpus: every example and eval query rendered as the model will see it."""
    examples = list(BUILTIN_EXAMPLES) + list(_read_examples(data_dir))
    queries = _read_queries(data_dir.parent / "evals" / "queries.txt")
    return [render_example(q, c) for q, c in examples] + [render_prompt(q) for q in queries]


def _read_examples(data_dir: Path) -> Iterator[tuple[str, str]]:
    """(input, output) pairs of `data_dir/*.jsonl`, in file and line order.

    Lines that are not such a JSON object are skipped rather than fatal: other tools write
    these files, and a file caught mid-write ends in a partial line.
    """
    for path in sorted(data_dir.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError):  # RecursionError: absurdly deep
                continue
            if isinstance(record, dict):
                query, completion = record.get("input"), record.get("output")
                if isinstance(query, str) and isinstance(completion, str):
                    yield query, completion


def _read_queries(path: Path) -> list[str]:
    """Queries of an eval file: one per line, `#` comments and blank lines skipped."""
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def train_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    """Learn a Qwen-style byte-level BPE of `vocab_size` tokens, special tokens last.

    Special tokens are cut out of the training text first: they are added whole afterwards,
    and letting BPE see them would spend merges on pieces like `<|im_` that never occur.
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.post_processor = processors.ByteLevel(
        add_prefix_space=False, trim_offsets=False, use_regex=False
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS),
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    pieces = [piece for text in texts for piece in _SPECIAL_SPLIT.split(text) if piece]
    tokenizer.train_from_iterator(pieces, trainer=trainer)
    tokenizer.add_special_tokens(
        [
            AddedToken(t, special=True, normalized=False)
            for t in SPECIAL_TOKENS
            if t not in ADDED_NOT_SPECIAL
        ]
    )
    tokenizer.add_tokens(
        [AddedToken(t, special=False, normalized=False) for t in ADDED_NOT_SPECIAL]
    )
    return tokenizer


def tensor_shapes(dims: dict[str, Any], vocab_size: int) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of a Qwen3ForCausalLM's weights, in module order (the draw order)."""
    hidden, head_dim = dims["hidden_size"], dims["head_dim"]
    q_width = dims["num_attention_heads"] * head_dim
    kv_width = dims["num_key_value_heads"] * head_dim
    inner = dims["intermediate_size"]
    shapes: list[tuple[str, tuple[int, ...]]] = [
        ("model.embed_tokens.weight", (vocab_size, hidden))
    ]
    for layer in range(dims["num_hidden_layers"]):
        prefix = f"model.layers.{layer}."
        shapes += [
            (prefix + "self_attn.q_proj.weight", (q_width, hidden)),
            (prefix + "self_attn.k_proj.weight", (kv_width, hidden)),
            (prefix + "self_attn.v_proj.weight", (kv_width, hidden)),
            (prefix + "self_attn.o_proj.weight", (hidden, q_width)),
            (prefix + "self_attn.q_norm.weight", (head_dim,)),
            (prefix + "self_attn.k_norm.weight", (head_dim,)),
            (prefix + "mlp.gate_proj.weight", (inner, hidden)),
            (prefix + "mlp.up_proj.weight", (inner, hidden)),
            (prefix + "mlp.down_proj.weight", (hidden, inner)),
            (prefix + "input_layernorm.weight", (hidden,)),
            (prefix + "post_attention_layernorm.weight", (hidden,)),
        ]
    shapes.append(("model.norm.weight", (hidden,)))
    if not dims["tie_word_embeddings"]:
        shapes.append(("lm_head.weight", (vocab_size, hidden)))
    return shapes


def _save_weights(path: Path, dims: dict[str, Any], vocab_size: int, seed: int) -> None:
    """Draw every matrix from N(0, INIT_STD) and set every norm to 1; save float32 safetensors.

    The `format: pt` metadata is what transformers expects of a PyTorch checkpoint.
    """
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.RandomState(seed)
    tensors = {
        name: np.ones(shape, dtype=np.float32)
        if len(shape) == 1
        else (rng.standard_normal(shape) * INIT_STD).astype(np.float32)
        for name, shape in tensor_shapes(dims, vocab_size)
    }
    save_file(tensors, str(path), metadata={"format": "pt"})


def _model_config(dims: dict[str, Any], vocab_size: int, ids: dict[str, int]) -> dict[str, Any]:
    """config.json with Qwen3-1.7B's keys (rope_theta at top level, as every loader reads)."""
    return {
        "architectures": ["Qwen3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": ids[ENDOFTEXT],
        "eos_token_id": ids[IM_END],
        "hidden_act": "silu",
        "initializer_range": INIT_STD,
        "max_window_layers": dims["num_hidden_layers"],
        "model_type": "qwen3",
        "rope_scaling": None,
        "sliding_window": None,
        "torch_dtype": "float32",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab_size,
        **dims,
    }


def _token_entry(token: str) -> dict[str, Any]:
    """How Qwen's tokenizer files describe an added token: matched verbatim, never stripped."""
    return {
        "content": token,
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
    }


def _tokenizer_config(ids: dict[str, int], dims: dict[str, Any]) -> dict[str, Any]:
    """tokenizer_config.json with Qwen3's keys, the chat template included.

    `model_max_length` is the tiny model's real context, not Qwen's 131072, so truncation and
    its warnings happen where this model would actually fail.
    """
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(ids[token]): {**_token_entry(token), "special": token not in ADDED_NOT_SPECIAL}
            for token in SPECIAL_TOKENS
        },
        "additional_special_tokens": [IM_START, IM_END],
        "bos_token": None,
        "chat_template": QWEN3_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": IM_END,
        "errors": "replace",
        "model_max_length": dims["max_position_embeddings"],
        "pad_token": ENDOFTEXT,
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def _special_tokens_map() -> dict[str, Any]:
    """special_tokens_map.json as Qwen3 ships it (for tools that read it instead)."""
    return {
        "additional_special_tokens": [IM_START, IM_END],
        "eos_token": _token_entry(IM_END),
        "pad_token": _token_entry(ENDOFTEXT),
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Sorted keys, 2-space indent, trailing newline: stable bytes, as transformers writes."""
    path.write_text(
        json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )
