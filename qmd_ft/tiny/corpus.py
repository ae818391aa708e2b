"""The tiny tokenizer's training text: built-in examples, the project's data and eval queries.

Everything is rendered in the prompt format, so the learnt vocabulary covers the fixed text
("/no_think Expand this search query:", "lex:") in few tokens, as Qwen's vocabulary does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from qmd_ft.prompt import render_example, render_prompt
from qmd_ft.resources import defaults_root

DEFAULT_DATA_DIR = defaults_root() / "data"
"""The project's `data/` folder; `evals/queries.txt` is read from beside it."""


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


def training_texts(data_dir: Path) -> list[str]:
    """The tokenizer corpus: every example and eval query rendered as the model will see it."""
    examples = list(BUILTIN_EXAMPLES) + list(read_examples(data_dir))
    queries = _read_queries(data_dir.parent / "evals" / "queries.txt")
    return [render_example(q, c) for q, c in examples] + [render_prompt(q) for q in queries]


def read_examples(data_dir: Path) -> Iterator[tuple[str, str]]:
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
