"""The efetch / baseline XML parser, on hand-written fixtures and the real corpus."""

from __future__ import annotations

import pytest

from ingest.records import ParseError
from ingest.sources.pubmed import parse_pubmed_xml


@pytest.fixture
def cases(fixtures):
    result = parse_pubmed_xml((fixtures / "pubmed" / "efetch_cases.xml").read_bytes())
    return result, {r["pmid"]: r for r in result.records}


def test_records_and_deletions(cases):
    result, by_pmid = cases
    assert sorted(by_pmid) == [2345678, 17000002, 38000003, 39000001]
    assert result.deleted == [38000003, 11111111]
    assert result.errors == []


def test_title_markup_flattened_with_word_boundaries(cases):
    _, by_pmid = cases
    assert by_pmid[39000001]["title"] == (
        "Intranasal esketamine in treatment-resistant depression: a randomized, "
        "double-blind trial of 2 mg/kg-1 equivalents."
    )
    assert by_pmid[38000003]["title"] == "Retracted: arketamine and (2R,6R)-hydroxynorketamine in mice."


def test_structured_abstract_sections(cases):
    _, by_pmid = cases
    sections = by_pmid[39000001]["abstract_sections"]
    assert [s["label"] for s in sections] == ["BACKGROUND", "METHODS", "METHODS", None, "RESULTS", "CONCLUSIONS"]
    assert sections[3]["nlm_category"] == "UNASSIGNED"
    assert "measured in Rattus at baseline" in sections[1]["text"]
    assert "R2 of the model" in sections[1]["text"]
    assert sections[3]["text"] == "Secondary outcomes included ΔMADRS at day 28."
    abstract = by_pmid[39000001]["abstract"]
    assert abstract.startswith("BACKGROUND: Esketamine, the S-enantiomer of ketamine, is an NMDA receptor")
    assert "\n\nMETHODS: A second cohort" in abstract
    assert "CopyrightInformation" not in abstract and "©" not in abstract


def test_unstructured_abstract(cases):
    _, by_pmid = cases
    record = by_pmid[2345678]
    assert record["abstract_sections"] == [
        {"label": None, "nlm_category": None, "text": record["abstract"]}
    ]
    assert record["abstract"].startswith("Forty children received intramuscular ketamine")


def test_journal_and_dates(cases):
    _, by_pmid = cases
    r = by_pmid[39000001]
    assert r["journal"].startswith("Neuropsychopharmacology : official publication")
    assert (r["iso_abbrev"], r["issn"], r["volume"], r["issue"], r["pages"]) == (
        "Neuropsychopharmacology", "1740-634X", "49", "9", "1401-1410")
    assert (r["year"], r["pub_date"], r["medline_date"]) == (2024, "2024-08-15", None)
    old = by_pmid[2345678]
    assert (old["year"], old["pub_date"], old["medline_date"]) == (1990, "1990-05", "1990 May-Jun")
    season = by_pmid[17000002]
    assert (season["year"], season["pub_date"]) == (2007, "2007-03")


def test_authors_collective_names_affiliations_orcid(cases):
    _, by_pmid = cases
    authors = by_pmid[39000001]["authors"]
    assert [a["last_name"] for a in authors] == ["Nguyen", "O'Brien", None]
    assert authors[0]["orcid"] == "0000-0002-1825-0097"
    assert authors[0]["affiliations"] == [
        "Department of Psychiatry, University of Example, Leeds, UK.",
        "Example Mood Disorders Centre, Leeds, UK.",
    ]
    assert authors[1]["fore_name"] == "Seán" and authors[1]["suffix"] == "Jr"
    assert authors[2]["collective_name"] == "ESKETINTRANASAL Study Group"
    assert by_pmid[17000002]["authors"][0]["collective_name"] == "Hong Kong Urology Collaborative"


def test_language_doi_pmc(cases):
    _, by_pmid = cases
    r = by_pmid[39000001]
    assert r["languages"] == ["eng", "fre"]
    assert r["doi"] == "10.1038/s41386-024-01855-x"
    assert r["pmcid"] == "PMC11111111"
    assert r["pmid_version"] == 1
    # DOI from ELocationID when the ArticleIdList has none.
    assert by_pmid[38000003]["doi"] == "10.3389/fpsyt.2023.1234567"
    assert by_pmid[2345678]["doi"] is None


def test_publication_types_mesh_chemicals_keywords(cases):
    _, by_pmid = cases
    r = by_pmid[39000001]
    assert [p["name"] for p in r["publication_types"]] == [
        "Journal Article", "Randomized Controlled Trial", "Multicenter Study"]
    assert r["publication_types"][1]["ui"] == "D016449"
    ketamine = next(m for m in r["mesh"] if m["descriptor"] == "Ketamine")
    assert ketamine["descriptor_ui"] == "D007649" and ketamine["major"] is True
    assert [(q["name"], q["major"]) for q in ketamine["qualifiers"]] == [
        ("adverse effects", False), ("therapeutic use", False)]
    trd = next(m for m in r["mesh"] if m["descriptor"].startswith("Depressive"))
    assert trd["major"] is False and trd["qualifiers"][0] == {
        "ui": "Q000188", "name": "drug therapy", "major": True}
    assert r["chemicals"] == [
        {"ui": "D000928", "name": "Antidepressive Agents", "registry_number": None},
        {"ui": "D007649", "name": "Ketamine", "registry_number": "690G0D6V8H"},
    ]
    assert r["keywords"] == ["esketamine", "N-methyl-D-aspartate", "rapid-acting antidepressant"]


def test_databank_nct_numbers(cases):
    _, by_pmid = cases
    r = by_pmid[39000001]
    assert r["nct_ids"] == ["NCT03434041", "NCT04338321"]
    assert {"name": "EudraCT", "accession": "2017-000345-12"} in r["databanks"]


def test_comments_corrections(cases):
    _, by_pmid = cases
    links = by_pmid[39000001]["comments_corrections"]
    assert links[0] == {"ref_type": "CommentIn", "pmid": 39000099,
                        "source": "Neuropsychopharmacology. 2024 Aug;49(9):1399-1400", "note": None}
    assert links[1]["ref_type"] == "ErratumIn" and links[1]["note"] == "Dosage error in Methods"
    assert by_pmid[2345678]["comments_corrections"][0]["ref_type"] == "RetractionIn"


def test_version_attribute(fixtures):
    result = parse_pubmed_xml((fixtures / "pubmed" / "update_v2.xml").read_bytes())
    assert result.records[0]["pmid_version"] == 2
    assert result.deleted == [2345678]


def test_malformed_xml_raises_with_partial_records(fixtures):
    with pytest.raises(ParseError) as info:
        parse_pubmed_xml((fixtures / "pubmed" / "malformed.xml").read_bytes())
    assert "malformed XML" in str(info.value)
    assert [r["pmid"] for r in info.value.partial.records] == [30000005]


def test_bad_record_is_reported_not_fatal():
    data = (b"<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>abc</PMID></MedlineCitation>"
            b"</PubmedArticle><PubmedArticle><MedlineCitation><PMID Version='1'>5</PMID><Article>"
            b"<ArticleTitle>ok</ArticleTitle></Article></MedlineCitation></PubmedArticle></PubmedArticleSet>")
    result = parse_pubmed_xml(data)
    assert [r["pmid"] for r in result.records] == [5]
    assert len(result.errors) == 1 and "bad PMID" in result.errors[0]


def test_entities_are_not_resolved():
    data = (b'<?xml version="1.0"?><!DOCTYPE PubmedArticleSet [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            b"<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID Version='1'>7</PMID><Article>"
            b"<ArticleTitle>a &xxe; b</ArticleTitle></Article></MedlineCitation></PubmedArticle></PubmedArticleSet>")
    result = parse_pubmed_xml(data)
    assert "root:" not in result.records[0]["title"]


def test_real_efetch_files_parse_cleanly(corpus):
    for path in sorted((corpus / "pubmed" / "efetch").glob("*.xml")):
        data = path.read_bytes()
        result = parse_pubmed_xml(data)
        assert result.errors == []
        assert len(result.records) == data.count(b"<PubmedArticle>")
        for record in result.records:
            assert record["pmid"] > 0 and record["title"]
            assert record["year"] and 1900 < record["year"] < 2100
            # Flattening never glues words around inline markup.
            assert "  " not in record["abstract"].replace("\n\n", " ")
