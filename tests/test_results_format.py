"""Typed results keep the files' format: what the gate, cards and `eval --json` read.

The fixtures under tests/fixtures/results/ were written by the producers before results became
pydantic models (tests/results_support.py, at main d40be3d); today's code must read them
losslessly and write the same keys, values and key order.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from results_support import masked, write_all

from qmd_ft.errors import UserError
from qmd_ft.evaluation import EvalResults, load_results, write_results
from qmd_ft.results import ExportedFrom
from qmd_ft.retrieval.results import RetrievalResults, load_retrieval_results

FIXTURES = Path(__file__).parent / "fixtures" / "results"
EVALS = ("greedy", "sampled", "rescored")
RETRIEVALS = ("retrieval", "retrieval_greedy")


def _load(name: str) -> EvalResults | RetrievalResults:
    path = FIXTURES / f"{name}.json"
    return load_retrieval_results(path) if name in RETRIEVALS else load_results(path)


@pytest.mark.parametrize("name", EVALS + RETRIEVALS)
def test_a_file_written_before_reads_and_writes_back_byte_for_byte(
    name: str, tmp_path: Path
) -> None:
    doc = _load(name)
    write_results(doc, tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text(encoding="utf-8") == (
        FIXTURES / f"{name}.json"
    ).read_text(encoding="utf-8")
    loader = load_retrieval_results if name in RETRIEVALS else load_results
    assert loader(tmp_path / "again.json") == doc


def test_the_producers_write_the_format_they_wrote_before(tmp_path: Path) -> None:
    """Same keys in the same order and the same values, but for clocks, hashes and paths."""
    written = write_all(tmp_path / "out", tmp_path / "work")
    for name, path in written.items():
        new = json.loads(path.read_text(encoding="utf-8"))
        old = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
        assert json.dumps(masked(new)) == json.dumps(masked(old)), name


def test_typed_access_matches_the_json() -> None:
    sampled = _load("sampled")
    assert isinstance(sampled, EvalResults)
    data = json.loads((FIXTURES / "sampled.json").read_text(encoding="utf-8"))
    summary = sampled.need_summary()
    assert summary.mean_reward == data["summary"]["mean_reward"]
    assert summary.samples and summary.samples.k == 3
    row = sampled.results[0]
    assert row.samples and [s.completion for s in row.samples] == [
        s["completion"] for s in data["results"][0]["samples"]
    ]
    assert sampled.provenance.sampling and sampled.provenance.sampling.key() == (0.7, 20, 0.8, 3)
    found = _load("retrieval")
    assert isinstance(found, RetrievalResults)
    raw = json.loads((FIXTURES / "retrieval.json").read_text(encoding="utf-8"))
    mean = found.systems["model"].mean
    assert mean.value("ndcg@10") == mean.ndcg_at_10 == raw["systems"]["model"]["mean"]["ndcg@10"]
    assert mean.as_dict() == raw["systems"]["model"]["mean"]
    first = found.per_query[0]
    assert first.system("raw") == first.raw and first.raw is not None
    assert first.raw.top10 == raw["per_query"][0]["raw"]["top10"]
    with pytest.raises(ValueError, match="unknown retrieval system"):
        first.system("deployed")


def test_absent_keys_stay_absent_and_unknown_keys_are_kept(tmp_path: Path) -> None:
    """A minimal or newer file goes through publish unchanged (it re-writes what it read)."""
    data = {
        "rubric_version": "v1",
        "results": [{"query": "q", "completion": "c", "reward": 1, "note": {"by": "hand"}}],
        "later_field": [1, 2],
    }
    path = tmp_path / "min.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    doc = load_results(path)
    assert doc.summary is None and doc.results[0].category == "uncategorized"
    write_results(doc, tmp_path / "out.json")
    assert json.loads((tmp_path / "out.json").read_text(encoding="utf-8")) == data
    with pytest.raises(UserError, match="no summary"):
        doc.need_summary()


def test_a_provenance_record_added_later_is_written(tmp_path: Path) -> None:
    """The pipeline records the merged model a scored GGUF came from (publish checks it)."""
    doc = _load("sampled")
    doc.provenance.exported_from = ExportedFrom(model="out/merged", model_sha256="ab")
    write_results(doc, tmp_path / "r.json")
    again = load_results(tmp_path / "r.json")
    assert again.provenance.exported_from == ExportedFrom(model="out/merged", model_sha256="ab")
    assert list(json.loads((tmp_path / "r.json").read_text())["provenance"])[-2:] == [
        "sampling",
        "exported_from",
    ]


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (
            lambda d: d["results"][1].update(reward="0.5"),
            r"results\[1\]\.reward: Input should be a valid number$",
        ),
        (lambda d: d["results"][0].pop("completion"), r"results\[0\]\.completion"),
        (lambda d: d.pop("rubric_version"), r"rubric_version: Field required"),
        (lambda d: d["summary"].update(n="three"), r"summary\.n"),
        (lambda d: d["provenance"]["sampling"].update(top_k=[20]), r"provenance\.sampling\.top_k"),
    ],
)
def test_a_malformed_results_file_is_one_line_naming_file_and_key(
    edit, where: str, tmp_path: Path
) -> None:
    data = json.loads((FIXTURES / "sampled.json").read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(UserError) as e:
        load_results(path)
    line = str(e.value)
    assert "\n" not in line and line.startswith(f"{path}: not a qmd-ft results file: ")
    assert re.search(where, line), line


def test_a_malformed_retrieval_file_names_the_metric(tmp_path: Path) -> None:
    data = json.loads((FIXTURES / "retrieval.json").read_text(encoding="utf-8"))
    data["per_query"][2]["model"].pop("ndcg@10")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(UserError) as e:
        load_retrieval_results(path)
    assert str(e.value) == (
        f"{path}: not a qmd-ft retrieval results file: per_query[2].model.ndcg@10: Field required"
    )
    for text, why in (("[1, 2]", "not a JSON object"), ("{", "not a JSON retrieval results")):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(UserError, match=why):
            load_retrieval_results(path)
    with pytest.raises(UserError, match="cannot read"):
        load_retrieval_results(tmp_path / "missing.json")
