"""Checking a whole text (ingest/claims/article.py and `kb check --text`)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_claims import make_kb
from test_stance import CONTRACT_STUDIES

from ingest.claims import ClaimError
from ingest.claims.article import MAX_TEXT_CHARS, article_paragraphs, checkable_statements
from ingest.cli import cli

ARTICLES = Path(__file__).parent / "fixtures" / "articles"

POST = """# Is ketamine right for you?

*From the Example Clinic blog*

Ketamine did not significantly reduce depressive symptoms in every trial. **This** matters.

We dim the lights and play calm music. Plan to have someone drive you home.

> "After my second infusion I felt like myself again." — Sam, 41

- Ketamine users can develop increased urinary symptoms and cystitis.
- Is it addictive?

We ask you not to eat beforehand, because nausea is a common side effect of ketamine.
"""


def texts(statements) -> list[str]:
    return [s.text for s in statements]


def test_markdown_is_read_as_running_text():
    paragraphs = article_paragraphs(POST)
    assert "Is ketamine right for you?" not in " ".join(paragraphs)  # a heading
    assert paragraphs[1] == "Ketamine did not significantly reduce depressive symptoms in every trial. This matters."
    assert any(p.startswith('"After my second infusion') for p in paragraphs)  # the quote marker is gone


def test_statements_about_ketamine_are_kept_and_the_rest_left_out():
    found = texts(checkable_statements(POST))
    assert "Ketamine did not significantly reduce depressive symptoms in every trial." in found
    assert "Ketamine users can develop increased urinary symptoms and cystitis." in found
    assert not any(t.startswith(("We dim", "Plan to", '"After my', "Is it", "This matters")) for t in found)


def test_a_reason_inside_advice_is_checked_on_its_own():
    statement = next(s for s in checkable_statements(POST) if s.text.startswith("We ask you"))
    assert statement.claim == "nausea is a common side effect of ketamine."


def test_a_sentence_continuing_a_paragraph_about_ketamine_is_checked_as_about_ketamine():
    text = "Ketamine often causes dissociation during the infusion. It usually fades within an hour."
    second = checkable_statements(text)[1]
    assert second.text == "It usually fades within an hour." and "(ketamine)" in second.claim


def test_a_text_over_the_limit_is_refused():
    with pytest.raises(ClaimError, match="longer than"):
        checkable_statements("Ketamine reduces depression. " * (MAX_TEXT_CHARS // 20))


@pytest.mark.parametrize("name", sorted(p.name for p in ARTICLES.glob("article_*.md")))
def test_every_fixture_article_has_checkable_statements(name):
    statements = checkable_statements((ARTICLES / name).read_text(encoding="utf-8"))
    assert len(statements) >= 5
    assert all(s.topics for s in statements)


@pytest.fixture(scope="module")
def kb(tmp_path_factory) -> Path:
    return make_kb(tmp_path_factory.mktemp("article") / "kb.db", CONTRACT_STUDIES)


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_kb_check_text_gives_one_row_per_statement(kb, tmp_path):
    post = tmp_path / "post.md"
    post.write_text(POST, encoding="utf-8")
    found = checkable_statements(POST)
    data = json.loads(run("check", "--text", str(post), "--db", str(kb), "--json").stdout)
    assert [d["statement"] for d in data] == texts(found)
    first = data[0]
    assert first["verdict"] in ("supported", "contradicted", "mixed", "insufficient")
    assert first["strongest_contradiction"]["pmid"] == "301"
    assert "did not significantly" in first["strongest_contradiction"]["sentence"]
    rows = list(csv.DictReader(io.StringIO(run("check", "--text", str(post), "--db", str(kb), "--csv").stdout)))
    assert [r["statement"] for r in rows] == texts(found) and rows[0]["contradiction_pmid"] == "301"
    text = run("check", "--text", str(post), "--db", str(kb)).stdout
    assert text.startswith(f"{len(found)} checkable statements in post.md")
    assert "Strongest contradiction: [No authors listed]" not in text  # the fixture studies have authors
    assert "Strongest contradiction: Author301 A (2020), PMID 301" in text


def test_kb_check_text_errors_are_one_line(kb, tmp_path):
    nothing = tmp_path / "nothing.md"
    nothing.write_text("We dim the lights.\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", "--text", str(nothing), "--db", str(kb)])
    assert result.exit_code == 1 and result.stderr.strip().endswith("no checkable statements about ketamine found")
    bad = tmp_path / "bad.md"
    bad.write_bytes(b"Ketamine \xff reduces depression.")
    result = CliRunner().invoke(cli, ["check", "--text", str(bad), "--db", str(kb)])
    assert result.exit_code == 1 and "not UTF-8" in result.stderr and result.stderr.count("\n") == 1
    both = CliRunner().invoke(cli, ["check", "a claim", "--text", str(bad), "--db", str(kb)])
    assert both.exit_code == 2


def statement_scores(folder: Path) -> tuple[float, float]:
    """Precision and recall of checkable_statements against a folder's statements.jsonl."""
    gold = [json.loads(line) for line in (folder / "statements.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    tp = fp = fn = 0
    for article in sorted({g["article"] for g in gold}):
        found = set(texts(checkable_statements((folder / article).read_text(encoding="utf-8"))))
        labelled = {g["sentence"]: g["checkable"] for g in gold if g["article"] == article}
        tp += sum(1 for text, checkable in labelled.items() if checkable and text in found)
        fn += sum(1 for text, checkable in labelled.items() if checkable and text not in found)
        fp += sum(1 for text in found if not labelled.get(text, False))
    return tp / (tp + fp), tp / (tp + fn)


# Measured on the blind labels of tests/fixtures/articles/ (README there), minus a margin. These
# four articles were used to develop the rules: P 0.893, R 0.931 (72 checkable of 126 sentences).
DEV_FLOORS = (0.85, 0.88)


def test_checkable_statements_floor_on_the_development_articles():
    precision, recall = statement_scores(ARTICLES)
    assert precision >= DEV_FLOORS[0] and recall >= DEV_FLOORS[1], (precision, recall)


# tests/fixtures/articles/test/: three more articles, written and labelled blind after the rules
# were set, never tuned on: P 0.828, R 0.857 (56 checkable of 97 sentences).
TEST_FLOORS = (0.78, 0.80)


def test_checkable_statements_floor_on_the_blind_test_articles():
    precision, recall = statement_scores(ARTICLES / "test")
    assert precision >= TEST_FLOORS[0] and recall >= TEST_FLOORS[1], (precision, recall)
